"""Checkpoints: pick the step where the subject looks right, and export it with one key.

Any run under the runs folder can be opened (running or finished, from this studio, the CLI
or another session); the screen re-reads the run folder every 1.5 s and follows new samples.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Header, Label, Select, Static
from textual.worker import Worker, WorkerState

from sdstudio.core.paths import runs_root
from sdstudio.core.runs.run_dir import RunDir, list_runs
from sdstudio.tui.review import RunSnapshot, load_favourites, read_snapshot, signature, toggle_favourite
from sdstudio.tui.screens.resume import is_resumable
from sdstudio.tui.widgets.contact_sheet import ContactSheet, SheetRow
from sdstudio.tui.widgets.sample_preview import SamplePreview, Shown
from sdstudio.tui.screens.base import StudioScreen
from sdstudio.tui.widgets.footer import StudioFooter
from sdstudio.tui.widgets.scores_table import ScoresPanel

POLL_SECONDS = 1.5


def run_label(run: RunDir) -> str:
    """`name  [state step/total]`, the state as `sdstudio runs` says it (a cut-off stop settled)."""
    from sdstudio.core.runs.overview import run_state

    state = run_state(run)  # settles first, so its status is read after
    st = run.status()
    return f"{run.name}  [{state} {st.get('step', 0)}/{st.get('total', 0)}]"


class CheckpointsScreen(StudioScreen):
    AUTO_FOCUS = "#grid"
    DEFAULT_CSS = """
    CheckpointsScreen #run-bar { height: 1; }
    CheckpointsScreen #run-bar Label { width: 5; color: $text-muted; }
    CheckpointsScreen #run-select { width: 1fr; }
    CheckpointsScreen #review-body { height: 1fr; }
    CheckpointsScreen #grid { width: 3fr; min-width: 34; height: 1fr; }
    CheckpointsScreen SamplePreview { width: 2fr; }
    CheckpointsScreen #run-hint { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("e", "export", "Export", id="checkpoints.export",
                tooltip="Export the selected checkpoint for A1111/ComfyUI"),
        Binding("f", "favourite", "Fav", id="checkpoints.favourite",
                tooltip="Mark or unmark the selected checkpoint"),
        Binding("c", "compare", "Compare", id="checkpoints.compare",
                tooltip="Pin this step on the left to compare it with the selection"),
        Binding("r", "resume", "Resume", id="checkpoints.resume",
                tooltip="Resume this stopped run from its latest checkpoint"),
        Binding("b", "best", "Best", id="checkpoints.best", show=False,
                tooltip="Jump to the recommended checkpoint (the scores panel says so)"),
        Binding("s", "sort_scores", "Sort", id="checkpoints.sort_scores", show=False,
                tooltip="Sort the scores table by the next score"),
        Binding("o", "choose_run", "Runs", id="checkpoints.choose_run", tooltip="Choose another run", show=False),
        Binding("h", "move('left')", "Left", id="checkpoints.left", show=False),
        Binding("j", "move('down')", "Down", id="checkpoints.down", show=False),
        Binding("k", "move('up')", "Up", id="checkpoints.up", show=False),
        Binding("l", "move('right')", "Right", id="checkpoints.right", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.run: RunDir | None = None
        self.snapshot: RunSnapshot | None = None
        self.favourites: set[int] = set()
        self.pinned_step: int | None = None
        self.last_export: Path | None = None
        self._signature: Any = None
        self._runs_key: Any = None
        self._follow = True
        self._auto_run: Path | None = None  # the run F3 chose last (a run chosen by hand stays until this changes)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="run-bar"):
            yield Label("Run")
            yield Select([], prompt="no runs yet", compact=True, id="run-select")
        yield Static("", id="run-hint")
        with Horizontal(id="review-body"):
            yield ContactSheet(id="grid")
            yield SamplePreview(id="preview")
        yield ScoresPanel(id="scores-panel")
        yield StudioFooter(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "Checkpoints"
        self._auto_run = self.preferred_run()
        self._refresh_runs(select=getattr(self.app, "open_run", None) or self._auto_run)
        self.set_interval(POLL_SECONDS, self.poll)

    def on_screen_resume(self) -> None:
        """F3 shows the run training now, else the newest one, unless that is still the run
        it chose last time (then a run picked by hand in the meantime stays)."""
        preferred = self.preferred_run()
        if preferred is not None and preferred != self._auto_run:
            self._auto_run = preferred
            self._refresh_runs(select=preferred)
        self.poll()

    def preferred_run(self) -> Path | None:
        """The run training now (this studio's, or one another process trains), else the one
        touched last (status.json rewritten at every step and at the end)."""
        from sdstudio.core.runs.lock import holder

        runs = self._known_runs()
        session = getattr(self.app, "session", None)
        if session is not None and session.busy and session.run_dir is not None:
            return Path(session.run_dir)
        for run in runs[:10]:
            if holder(run.path) is not None:
                return run.path
        return max(runs, key=_last_activity).path if runs else None

    # runs
    def _known_runs(self) -> list[RunDir]:
        runs = list_runs(runs_root())
        extra = getattr(self.app, "open_run", None)
        if extra is not None and all(r.path.resolve() != Path(extra).resolve() for r in runs):
            runs.insert(0, RunDir(extra))
        session_run = getattr(getattr(self.app, "session", None), "run_dir", None)
        if session_run is not None and all(r.path.resolve() != Path(session_run).resolve() for r in runs):
            if RunDir(session_run).exists():
                runs.insert(0, RunDir(session_run))
        return runs

    def _refresh_runs(self, select: Path | None = None) -> None:
        runs = self._known_runs()
        key = tuple((r.path, r.status().get("state"), r.status().get("step")) for r in runs)
        chooser = self.query_one("#run-select", Select)
        if key != self._runs_key:
            self._runs_key = key
            chooser.prompt = "choose a run" if runs else "no runs yet"  # the blank entry, never stale
            with self.prevent(Select.Changed):
                chooser.set_options([(run_label(r), str(r.path)) for r in runs])
        target = Path(select) if select is not None else (self.run.path if self.run else None)
        if target is None and runs:
            target = self.preferred_run()
        if target is not None and chooser.value != str(target) and any(r.path == target for r in runs):
            with self.prevent(Select.Changed):
                chooser.value = str(target)
        if target is not None and (self.run is None or self.run.path != target):
            self.open(RunDir(target))

    def open(self, run: RunDir) -> None:
        self.run = run
        self.pinned_step = None
        self._signature = None
        self._follow = True  # a freshly opened run shows its newest step
        self.poll(force_table=True)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "run-select" and isinstance(event.value, str):
            self.open(RunDir(event.value))
            self.query_one("#grid", ContactSheet).focus()

    def poll(self, force_table: bool = False) -> None:
        """Re-read the run folder if anything in it changed (a running run, another process)."""
        if self.run is None:
            self._refresh_runs()
            if self.run is None:
                self.query_one("#run-hint", Static).update(f"No runs in {runs_root()} yet: start one on Train (2).")
                return
        self._refresh_runs()
        if self.query_one(ScoresPanel).load(self.run):  # scores.jsonl changed (trainer or `sdstudio score`)
            self.refresh_bindings()
        sig = signature(self.run)
        if sig == self._signature and not force_table:
            return
        self._signature = sig
        self.snapshot = read_snapshot(self.run)
        self.favourites = load_favourites(self.run)
        self._fill_table()
        st = self.snapshot.status
        hint = f"{st.get('state', '?')} · step {st.get('step', 0)}/{st.get('total', 0)} · " \
               f"{len(self.snapshot.checkpoint_steps)} checkpoints · ◆ checkpoint ★ favourite"
        self.query_one("#run-hint", Static).update(hint)
        self.refresh_bindings()

    # grid
    def _row_label(self, step: int) -> Text:
        snap = self.snapshot
        assert snap is not None
        ckpt = "◆" if step in snap.checkpoint_steps else " "
        fav = "★" if step in self.favourites else " "
        return Text(f"{step:>6} {ckpt}{fav}")

    def _fill_table(self) -> None:
        sheet = self.query_one("#grid", ContactSheet)
        snap = self.snapshot
        assert snap is not None
        old = sheet.cursor
        was_last = self._follow or (sheet.rows and old[0] >= len(sheet.rows) - 1)
        self._follow = False
        rows = [SheetRow(step, self._row_label(step).plain,
                         tuple((rec.path if (rec := snap.sample(step, i)) else None) for i in range(len(snap.columns))))
                for step in snap.steps]
        row = len(rows) - 1 if (was_last or old[0] >= len(rows)) else old[0]
        sheet.set_rows([c.title for c in snap.columns], rows, cursor=(max(row, 0), old[1]))
        self._update_preview()

    def selected(self) -> tuple[int, int] | None:
        """(step, column index) under the cursor."""
        sheet = self.query_one("#grid", ContactSheet)
        if self.snapshot is None or not self.snapshot.steps or not sheet.rows:
            return None
        row, column = sheet.cursor
        return self.snapshot.steps[min(row, len(self.snapshot.steps) - 1)], column

    def _shown(self, step: int, column: int) -> Shown:
        snap = self.snapshot
        assert snap is not None
        rec = snap.sample(step, column)
        col = snap.columns[column] if column < len(snap.columns) else None
        return Shown(path=rec.path if rec else None, step=step, seed=col.seed if col else None,
                     loss=snap.loss_at(step), prompt=col.prompt if col else "",
                     checkpoint=step in snap.checkpoint_steps, favourite=step in self.favourites)

    def _update_preview(self) -> None:
        preview = self.query_one(SamplePreview)
        sel = self.selected()
        if sel is None:
            preview.show(None)
            return
        step, column = sel
        pinned = self._shown(self.pinned_step, column) if self.pinned_step is not None else None
        preview.show(self._shown(step, column), pinned)

    def on_contact_sheet_selected(self, event: ContactSheet.Selected) -> None:
        self._update_preview()

    # actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False hides a key that does nothing here, so the footer keeps 1-5 visible at 80 columns
        if action == "resume":
            return self.run is not None and is_resumable(self.run) and not self.app.session.busy  # type: ignore[attr-defined]
        if action in ("best", "sort_scores"):
            return self.query_one(ScoresPanel).recommended is not None if action == "best" else bool(
                self.query_one(ScoresPanel).table.rows)
        if action in ("export", "favourite", "compare"):
            return self.selected() is not None
        return True

    def action_move(self, direction: str) -> None:
        drow, dcol = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[direction]
        self.query_one("#grid", ContactSheet).action_move(drow, dcol)

    def action_best(self) -> None:
        """Put the grid's cursor (and the scores table's) on the recommended checkpoint."""
        panel = self.query_one(ScoresPanel)
        step = panel.jump_to_recommended()
        if step is not None and self.snapshot is not None and step in self.snapshot.steps:
            sheet = self.query_one("#grid", ContactSheet)
            sheet.cursor = (self.snapshot.steps.index(step), sheet.cursor[1])
            # the whole reason: the panel has room for its first lines only in a small terminal
            self.notify(panel.reason, title=f"Recommended: step {step}", timeout=20)

    def action_sort_scores(self) -> None:
        key = self.query_one(ScoresPanel).cycle_sort()
        self.notify(f"scores sorted by {key}")

    def action_choose_run(self) -> None:
        chooser = self.query_one("#run-select", Select)
        chooser.focus()
        chooser.action_show_overlay()

    def action_favourite(self) -> None:
        sel = self.selected()
        if sel is None or self.run is None:
            return
        now = toggle_favourite(self.run, sel[0])
        self.favourites = load_favourites(self.run)
        self._signature = signature(self.run)
        self._fill_table()  # same shape: only the row label changes
        self.notify(f"step {sel[0]} {'marked as favourite' if now else 'unmarked'}")

    def action_compare(self) -> None:
        sel = self.selected()
        if sel is None:
            return
        self.pinned_step = None if self.pinned_step == sel[0] else sel[0]
        self._update_preview()
        if self.pinned_step is not None:
            self.notify(f"step {sel[0]} pinned on the left; move to compare (c again to unpin)")

    def action_resume(self) -> None:
        if self.run is not None:
            self.app.resume_training(self.run.path)  # type: ignore[attr-defined]

    def action_export(self) -> None:
        sel = self.selected()
        if sel is None or self.run is None or self.snapshot is None:
            return
        step = sel[0]
        if step not in self.snapshot.checkpoint_steps:
            have = ", ".join(str(s) for s in sorted(self.snapshot.checkpoint_steps)) or "none yet"
            self.notify(f"No checkpoint at step {step} (checkpoints: {have}); pick a row marked ◆.",
                        severity="warning")
            return
        self.notify(f"Exporting step {step}…")
        run_path = self.run.path
        sink = partial(self.app.call_from_thread, self._export_phase)
        self.run_worker(lambda: _export(run_path, step, sink), name=f"export-{step}", group="export", thread=True,
                        exit_on_error=False)

    def _export_phase(self, event: Any) -> None:
        """The export's progress line, in the run's hint line until it is done."""
        if event.finished:
            self._signature = None  # the next poll writes the run's hint again
        else:
            self.query_one("#run-hint", Static).update(event.line())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "export":
            return
        if event.state == WorkerState.SUCCESS:
            self.last_export = Path(event.worker.result)
            self.notify(f"Exported {self.last_export}", title="Export done", timeout=12)
        elif event.state == WorkerState.ERROR:
            self.notify(str(event.worker.error), title="Export failed", severity="error", timeout=12)


def _last_activity(run: RunDir) -> float:
    """When a run last changed: its status.json (each step, the end), else its run.toml."""
    for path in (run.status_json, run.run_toml):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return 0.0



def _export(run_path: Path, step: int, sink: Any = None) -> Path:
    """A LoRA run's checkpoint as a kohya LoRA; a full fine-tune's as the default single fp16 file
    (EMA weights when it has them). e again: the same file, refreshed."""
    from sdstudio.core.full.export import export_full_checkpoint, is_full_source
    from sdstudio.core.lora.export import export_checkpoint  # torch/safetensors load here
    from sdstudio.core.progress import reporting_to

    with reporting_to(sink):
        if is_full_source(run_path):
            return Path(export_full_checkpoint(run_path, step=step, overwrite=True))
        return Path(export_checkpoint(run_path, step=step, out=None, overwrite=True))
