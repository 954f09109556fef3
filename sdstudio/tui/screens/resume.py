"""The offer to resume a run that was stopped or cut off (a dropped SSH session, a crash)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from sdstudio.core.paths import runs_root
from sdstudio.core.runs.run_dir import RUNNING, STOPPED, RunDir, list_runs


def is_resumable(run: RunDir) -> bool:
    """Stopped early, or marked running by a process that no longer exists, with a checkpoint to go on from."""
    status = run.status()
    state = status.get("state")
    dead_running = state == RUNNING and not run.is_alive()
    if state != STOPPED and not dead_running:
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


class ResumeScreen(ModalScreen[Path | None]):
    """Asks once, at start-up; dismisses with the run folder to resume, or None."""

    DEFAULT_CSS = """
    ResumeScreen { align: center middle; }
    ResumeScreen > Vertical { width: 64; max-width: 100%; height: auto; border: thick $accent;
                              background: $surface; padding: 1 2; }
    ResumeScreen Horizontal { height: auto; margin-top: 1; }
    ResumeScreen Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("r", "resume", "Resume", id="resume.yes"),
        Binding("escape,n", "dismiss_offer", "Not now", id="resume.no"),
    ]

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        status = self.run.status()
        latest = self.run.latest_checkpoint()
        state = "was cut off" if status.get("state") == RUNNING else "was stopped"
        with Vertical():
            yield Label(f"[b]{self.run.name}[/b] {state} at step {status.get('step', '?')} of {status.get('total', '?')}.")
            yield Label(f"Resume it from its checkpoint at step {latest.step if latest else '?'}?", classes="muted")
            with Horizontal():
                yield Button("Resume (r)", id="resume-yes", variant="primary")
                yield Button("Not now (n)", id="resume-no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.run.path if event.button.id == "resume-yes" else None)

    def action_resume(self) -> None:
        self.dismiss(self.run.path)

    def action_dismiss_offer(self) -> None:
        self.dismiss(None)
