"""One line per run for `sdstudio runs` and the studio: state, progress, loss, pid, start, ETA.

The state comes from status.json checked against the run lock, so a run whose trainer died
(kill -9, a crash, a reboot) reads "crashed — resumable" and never "running".
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.events import format_duration
from sdstudio.core.runs import lock as run_lock
from sdstudio.core.runs.run_dir import RUNNING, RunDir, list_runs

CRASHED = "crashed — resumable"
QUEUED = "queued"


@dataclass
class RunRow:
    name: str
    path: str
    state: str
    step: int
    total: int
    loss: float | None
    pid: int | None
    started: float | None
    eta_seconds: float | None
    error: str | None = None
    stopping: bool = False  # a stop was acknowledged and the trainer is finishing its step

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_state(run: RunDir, status: dict[str, Any] | None = None) -> str:
    """The state a person should see: running only while a live trainer holds the run; a stop
    cut off between its checkpoint and its status is settled to stopped (RunDir.settle)."""
    status = status if status is not None else run.status()
    state = str(status.get("state") or "unknown")
    if state in (RUNNING, "starting") and run_lock.live_trainer(run.path, status) is None:
        if status.get("stopping") and run.settle():
            return str(run.status().get("state"))
        return CRASHED
    return state


def _eta(metrics: list[dict[str, Any]], step: int, total: int) -> float | None:
    secs = [float(r["seconds"]) for r in metrics[-20:] if isinstance(r.get("seconds"), (int, float))]
    if not secs or not total or step >= total:
        return None
    return (total - step) * sum(secs) / len(secs)


def _started(run: RunDir, owner: dict[str, Any] | None) -> float | None:
    if owner and owner.get("started"):
        return float(owner["started"])
    try:
        return run.run_toml.stat().st_mtime
    except OSError:
        return None


def overview(run: RunDir) -> RunRow:
    run.settle()
    status = run.status()
    state = run_state(run, status)
    owner = run_lock.holder(run.path)
    metrics = run.metrics()
    step, total = int(status.get("step") or 0), int(status.get("total") or 0)
    loss = metrics[-1].get("loss") if metrics else None
    acks = [a for a in status.get("commands") or [] if isinstance(a, dict)]
    return RunRow(
        name=run.name, path=str(run.path), state=state, step=step, total=total,
        loss=float(loss) if isinstance(loss, (int, float)) else None,
        pid=int(status["pid"]) if status.get("pid") else None,
        started=_started(run, owner),
        eta_seconds=_eta(metrics, step, total) if state == RUNNING else None,
        error=status.get("error"),
        stopping=state == RUNNING and any(a.get("command") == "stop" for a in acks),
    )


def all_runs(root: str | os.PathLike[str]) -> list[RunRow]:
    """Every run under `root`, newest first, then the queue's entries that have no run folder to
    show (waiting, starting, or failed before the trainer wrote one)."""
    from sdstudio.core.runs import queue as run_queue

    rows = [overview(run) for run in list_runs(root, unstarted=True)]
    shown = {Path(r.path).resolve(): r for r in rows}
    for item in run_queue.load(Path(root)).items:
        run = RunDir(item.run_dir)
        row = shown.get(Path(item.run_dir).resolve())
        if row is not None:
            if item.state == run_queue.WAITING and row.state not in (RUNNING, "starting"):
                row.state = f"{QUEUED} (resume)"  # waits in the queue to go on (left by a runner that died)
            continue
        if item.state != run_queue.WAITING and run.exists():
            rows.append(overview(run))  # a queued run whose output_dir lies outside the runs folder
            continue
        state = {run_queue.WAITING: QUEUED, run_queue.RUNNING: "starting"}.get(item.state, item.state)
        rows.append(RunRow(name=item.run_name or Path(item.run_dir).name, path=item.run_dir, state=state, step=0,
                           total=item.total, loss=None, pid=None, started=item.started or item.added,
                           eta_seconds=None, error=item.error))
    return rows


def format_table(rows: list[RunRow]) -> str:
    header = ("RUN", "STATE", "STEP", "LOSS", "PID", "STARTED", "ETA")
    lines = [header]
    for r in rows:
        state = "stopping…" if r.stopping else r.state
        if r.error and r.state == "failed":
            state = f"failed: {r.error[:40]}…" if len(r.error) > 40 else f"failed: {r.error}"
        lines.append((r.name, state, f"{r.step}/{r.total}" if r.total else str(r.step),
                      f"{r.loss:.4f}" if r.loss is not None else "-", str(r.pid) if r.pid and r.state in (RUNNING, "starting") else "-",
                      time.strftime("%m-%d %H:%M", time.localtime(r.started)) if r.started else "-",
                      format_duration(r.eta_seconds) if r.eta_seconds is not None else "-"))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
                     for row in lines)
