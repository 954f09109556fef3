"""What the Checkpoints screen shows of a run, read from its folder (no widgets here).

Everything is rebuilt from the run directory, so a run written by the CLI or by another
studio in another SSH session looks the same as one started here; `signature()` tells the
screen cheaply whether anything changed since the last look.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.runs.run_dir import RunDir, SampleRecord



@dataclass(frozen=True)
class Column:
    prompt_index: int
    seed: int
    prompt: str

    @property
    def title(self) -> str:
        return f"p{self.prompt_index}·{self.seed}"


@dataclass
class RunSnapshot:
    """Steps x (prompt, seed) samples, losses and checkpoints of one run at one moment."""

    run: RunDir
    status: dict[str, Any]
    steps: list[int] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    cells: dict[tuple[int, int], SampleRecord] = field(default_factory=dict)  # (step, column index)
    losses: dict[int, float] = field(default_factory=dict)
    checkpoint_steps: set[int] = field(default_factory=set)

    def loss_at(self, step: int) -> float | None:
        """The logged loss at `step`, else the nearest earlier one (losses may be logged sparsely)."""
        if step in self.losses:
            return self.losses[step]
        earlier = [s for s in self.losses if s <= step]
        return self.losses[max(earlier)] if earlier else None

    def sample(self, step: int, column: int) -> SampleRecord | None:
        return self.cells.get((step, column))


def read_snapshot(run: RunDir) -> RunSnapshot:
    snap = RunSnapshot(run=run, status=run.status())
    samples = run.samples()
    columns = sorted({(s.prompt_index, s.seed) for s in samples})
    prompts = {(s.prompt_index, s.seed): s.prompt for s in samples}
    snap.columns = [Column(p, seed, prompts[(p, seed)]) for p, seed in columns]
    index = {key: i for i, key in enumerate(columns)}
    for s in samples:
        snap.cells[(s.step, index[(s.prompt_index, s.seed)])] = s
    for row in run.metrics():
        try:
            snap.losses[int(row["step"])] = float(row["loss"])
        except (KeyError, TypeError, ValueError):
            continue
    snap.checkpoint_steps = {c.step for c in run.checkpoints()}
    snap.steps = sorted({s.step for s in samples} | snap.checkpoint_steps)
    return snap


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def signature(run: RunDir) -> tuple[Any, ...]:
    """Changes whenever a sample, metric, checkpoint, status or favourite is written."""
    try:
        ckpts = tuple(sorted(os.listdir(run.checkpoints_dir)))
    except OSError:
        ckpts = ()
    return (_stat(run.samples_index), _stat(run.metrics_jsonl), _stat(run.status_json),
            _stat(run.favourites_json), ckpts)


def load_favourites(run: RunDir) -> set[int]:
    """Checkpoint steps marked as favourites (kept in the run folder, so every viewer sees them)."""
    return run.favourites()


def save_favourites(run: RunDir, steps: set[int]) -> None:
    run.set_favourites(steps)


def toggle_favourite(run: RunDir, step: int) -> bool:
    """Flip one step's mark; returns True if it is now a favourite."""
    steps = load_favourites(run)
    now = step not in steps
    steps.symmetric_difference_update({step})
    save_favourites(run, steps)
    return now
