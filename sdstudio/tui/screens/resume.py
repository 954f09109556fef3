"""The offer to resume a run that was stopped or cut off (a dropped SSH session, a crash).

It is a one-line bar, not a dialog: it never takes the focus nor a key typed before (or after) it
appeared. Only F6 (the App's binding, active while an offer stands) resumes; a click hides it.
The offer never names a run a live trainer holds (`lock.live_trainer`, the one liveness check).
"""

from __future__ import annotations

from pathlib import Path

from textual.events import Click
from textual.widgets import Static

from sdstudio.core.paths import runs_root
from sdstudio.core.runs.lock import live_trainer
from sdstudio.core.runs.run_dir import RUNNING, STOPPED, RunDir, list_runs

OFFER_KEY = "f6"


def is_resumable(run: RunDir) -> bool:
    """Stopped early, or marked running by a process that no longer exists, with a checkpoint to go
    on from; never a run some trainer holds now (a resume that is just starting included). A stop a
    kill cut off is settled first, so it is offered as stopped."""
    run.settle()
    status = run.status()
    if status.get("state") not in (STOPPED, RUNNING) or live_trainer(run.path, status) is not None:
        return False
    total = int(status.get("total") or 0)
    latest = run.latest_checkpoint()
    return latest is not None and (not total or latest.step < total)


def find_resumable(root: Path | None = None) -> RunDir | None:
    """The newest run that can be resumed, if the newest runs include one."""
    for run in list_runs(root or runs_root())[:5]:
        if is_resumable(run):
            return run
    return None


class ResumeOffer(Static):
    """The bar at the top of the first screen; the App owns the offer and its key."""

    DEFAULT_CSS = """
    ResumeOffer { height: auto; padding: 0 1; background: $accent-muted; color: $text; }
    """

    def __init__(self, run: RunDir) -> None:
        status = run.status()
        latest = run.latest_checkpoint()
        how = "was cut off" if status.get("state") == RUNNING else "was stopped"
        super().__init__(f"[b]{run.name}[/b] {how} at step {status.get('step', '?')} of {status.get('total', '?')}. "
                         f"[b]F6[/b] resumes it from step {latest.step if latest else '?'} · click to hide",
                         id="resume-offer")
        self.run = run

    def on_click(self, event: Click) -> None:
        event.stop()
        self.app.withdraw_resume_offer()  # type: ignore[attr-defined]
