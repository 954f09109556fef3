"""The scores of a run's checkpoints beside each step, a score-vs-step chart and the recommended pick.

Everything comes from `<run>/scores.jsonl` (written by the trainer's background scorer or by
`sdstudio score`), so a run scored by another process shows the same. The panel stays hidden
while a run has no scores. The base model's row (step 0) stays on top whatever the sort.
"""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training.scorers import LABELS
from sdstudio.core.training.scoring import ScoreTable, read_scores

VAL_LOSS = "val_loss"
MARK = "▶"


def _stamp(run: RunDir) -> tuple[int, int]:
    try:
        st = os.stat(run.scores_jsonl)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


class ScoresPanel(Horizontal):
    """Score columns per step, sortable; `jump_to_recommended()` puts the cursor on the pick."""

    DEFAULT_CSS = """
    ScoresPanel { height: 12; display: none; border-top: solid $panel; }
    ScoresPanel.-has-scores { display: block; }
    ScoresPanel #scores-side { width: 3fr; }
    ScoresPanel #scores-reason { height: 3; color: $text-muted; }
    ScoresPanel #scores { height: 1fr; }
    ScoresPanel #score-chart { width: 2fr; min-width: 24; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table: ScoreTable = ScoreTable([])
        self.sort_key: str = "step"
        self._stamp: Any = None
        self._run: RunDir | None = None

    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot  # plotext loads when the screen is built, not at startup

        with Vertical(id="scores-side"):
            yield Static("", id="scores-reason")
            yield DataTable(id="scores", cursor_type="row", zebra_stripes=True)
        yield PlotextPlot(id="score-chart")

    # data
    @property
    def recommended(self) -> int | None:
        rec = self.table.recommendation
        return rec.step if rec is not None else None

    @property
    def reason(self) -> str:
        """The recommendation's whole reason (the panel shows its first lines; `b` shows it all)."""
        rec = self.table.recommendation
        return rec.reason if rec is not None else ""

    def sort_keys(self) -> list[str]:
        """What `s` cycles through: step, each score, the validation loss."""
        keys = ["step", *self.table.metrics()]
        if any(r.val_loss is not None for r in self.table.rows):
            keys.append(VAL_LOSS)
        return keys

    def load(self, run: RunDir | None, force: bool = False) -> bool:
        """Re-read scores.jsonl if it changed; returns True when it did."""
        stamp = (run.path, _stamp(run)) if run is not None else None
        if stamp == self._stamp and not force:
            return False
        self._stamp, self._run = stamp, run
        self.table = read_scores(run) if run is not None else ScoreTable([])
        if self.sort_key not in self.sort_keys():
            self.sort_key = "step"
        self.set_class(bool(self.table.rows), "-has-scores")
        self._fill()
        self._chart()
        return True

    def ordered_steps(self) -> list[int]:
        """Rows in display order: the base first, then by the sort key (best first)."""
        rows = [r for r in self.table.rows if r.step != 0]
        base = [r.step for r in self.table.rows if r.step == 0]
        if self.sort_key == "step":
            ordered = sorted(rows, key=lambda r: r.step)
        elif self.sort_key == VAL_LOSS:
            ordered = sorted(rows, key=lambda r: (r.val_loss is None, r.val_loss or 0.0, r.step))
        else:
            key = self.sort_key
            ordered = sorted(rows, key=lambda r: (key not in r.scores, -r.scores.get(key, 0.0), r.step))
        return base + [r.step for r in ordered]

    # drawing
    def _fill(self) -> None:
        table = self.query_one("#scores", DataTable)
        rec = self.table.recommendation
        reason = self.query_one("#scores-reason", Static)
        if rec is not None and rec.step is not None:
            reason.update(Text(f"{MARK} recommended (b jumps to it): {rec.reason}"))
        else:
            reason.update(rec.reason if rec is not None else "")
        reason.tooltip = rec.reason if rec is not None else None
        metrics = self.table.metrics()
        table.clear(columns=True)
        arrow = {k: " ↓" if k == self.sort_key else "" for k in ["step", VAL_LOSS, *metrics]}
        table.add_column("step" + arrow["step"], key="step")
        table.add_column("val loss" + arrow[VAL_LOSS], key=VAL_LOSS)
        for m in metrics:
            table.add_column(LABELS.get(m, m) + arrow[m], key=m)
        for step in self.ordered_steps():
            row = self.table.row(step)
            assert row is not None
            label = "base" if step == 0 else str(step)
            mark = f"{MARK} " if step == self.recommended else "  "
            cells: list[Any] = [Text(mark + label, style="bold" if step == self.recommended else "")]
            cells.append(Text(f"{row.val_loss:.4f}" if row.val_loss is not None else "-", justify="right"))
            cells += [Text(f"{row.scores[m]:.2f}" if m in row.scores else "-", justify="right") for m in metrics]
            table.add_row(*cells, key=str(step))

    def _chart(self) -> None:
        chart = self.query_one("#score-chart")
        plt = chart.plt  # type: ignore[attr-defined]
        plt.clear_data()
        plt.clear_figure()
        rows = [r for r in self.table.rows]
        plt.title("scores by step · val loss on the right")
        for m in self.table.metrics():
            pts = [(r.step, r.scores[m]) for r in rows if m in r.scores]
            if pts:
                plt.plot([p[0] for p in pts], [p[1] for p in pts], marker="braille")
        losses = [(r.step, r.val_loss) for r in rows if r.val_loss is not None]
        if losses:
            plt.plot([p[0] for p in losses], [p[1] for p in losses], yside="right", marker="braille")
        if self.recommended is not None:
            plt.vline(self.recommended)
        if rows:
            from sdstudio.tui.widgets.loss_chart import step_ticks

            plt.xticks(step_ticks(min(r.step for r in rows), max(r.step for r in rows)))
        chart.refresh()

    # actions
    def cycle_sort(self) -> str:
        keys = self.sort_keys()
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)] if self.sort_key in keys else "step"
        self._fill()
        return self.sort_key

    def jump_to_recommended(self) -> int | None:
        """Move the table's cursor to the recommended row; returns its step."""
        step = self.recommended
        if step is None:
            return None
        table = self.query_one("#scores", DataTable)
        table.move_cursor(row=table.get_row_index(str(step)))
        return step
