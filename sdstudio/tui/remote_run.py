"""The studio's side of a detached run: start one, follow one, send it commands.

The App keeps one `TrainingSession` whatever trains it. For a run in another process, a
`RemoteRun` feeds that session with the events `RunFollower` reads back from the run folder,
and `RemoteControl` stands in for the in-process `TrainerControl`: the Train screen's stop /
sample / save keys become command files. No ML code here.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sdstudio.core.errors import SdstudioError
from sdstudio.core.events import FailedEvent
from sdstudio.core.runs.follow import RunFollower
from sdstudio.tui.session import STOPPING, TrainingSession


class RemoteControl:
    """`TrainerControl`'s three requests, delivered through `<run>/commands`."""

    def __init__(self, run_dir: Path, on_error: Callable[[str], None]) -> None:
        self.run_dir = run_dir
        self.on_error = on_error

    def _send(self, command: str) -> None:
        from sdstudio.core.runs.control import send_command

        try:
            send_command(self.run_dir, command, wait=0, source="the studio")
        except (SdstudioError, OSError) as exc:
            self.on_error(str(exc))

    def request_stop(self) -> None:
        self._send("stop")

    def request_sample(self) -> None:
        self._send("sample")

    def request_save(self) -> None:
        self._send("save")


class RemoteRun:
    """Follows one run folder into the App's session; `tick()` runs on the UI thread."""

    def __init__(self, session: TrainingSession, run_dir: Path, on_error: Callable[[str], None],
                 process: subprocess.Popen[bytes] | None = None, since: float = 0.0) -> None:
        self.session = session
        self.run_dir = Path(run_dir)
        self.process = process  # set when this studio started the trainer (reaped here)
        self.follower = RunFollower(self.run_dir, since=since)
        total = int(self.follower.run.status().get("total") or 0)
        session.begin(RemoteControl(self.run_dir, on_error), total=total)  # type: ignore[arg-type]
        session.run_dir = self.run_dir
        session.log_line(f"following {self.run_dir} (trained by a background process; quitting the studio "
                         "leaves it running)")

    @property
    def done(self) -> bool:
        return self.follower.ended

    def tick(self) -> None:
        exited = self.process is not None and self.process.poll() is not None  # before the poll: its last
        for event in self.follower.poll():                                     # status is read after it
            self.session.apply(event)
        if exited and not self.follower.ended:
            # the trainer exited before it wrote a status of its own (a refused start puts the run's
            # previous one back; its log says why)
            self.session.apply(FailedEvent(0, f"the trainer exited with code {self.process.returncode}; "  # type: ignore[union-attr]
                                              f"see {self.follower.log_file}", self.run_dir))
            self.follower.ended = True
        if self.follower.ended:
            self.session.thread_exited(None)
        elif self.session.busy and self.session.state != STOPPING and self.follower.stopping:
            self.session.state = STOPPING  # a stop sent from anywhere: show it until the trainer has stopped
            self.session.version += 1


def start_detached_run(cfg: object) -> tuple[Path, subprocess.Popen[bytes], float]:
    """Freeze the form's config into the run folder and start `sdstudio train --detach`'s child on it."""
    from sdstudio.core.config import save_toml
    from sdstudio.core.runs.detach import LOG_NAME, plan_run, spawn

    since = time.time()
    if getattr(cfg, "run_name", None) is None and getattr(cfg, "output_dir", None) is None:
        from sdstudio.core.runs.naming import default_run_name

        cfg.run_name = default_run_name(cfg)  # type: ignore[arg-type, attr-defined]
    overrides = {"run_name": cfg.run_name} if getattr(cfg, "run_name", None) else {}  # type: ignore[attr-defined]
    path = Path(cfg.output_dir) if getattr(cfg, "output_dir", None) else None  # type: ignore[attr-defined]
    staged = (path or _runs_root() / str(cfg.run_name)) / "logs" / "studio-config.toml"  # type: ignore[attr-defined]
    save_toml(cfg, staged)  # type: ignore[arg-type]
    run_dir, _ = plan_run(str(staged), None, overrides)
    proc = spawn(["train", str(staged)], run_dir / "logs" / LOG_NAME)
    return run_dir, proc, since


def _runs_root() -> Path:
    from sdstudio.core.paths import runs_root

    return runs_root()


def newest_live_run(exclude: Path | None = None) -> Path | None:
    """The newest run some other process is training right now (one that is just starting
    included: it may not have written run.toml yet), to follow at start-up."""
    from sdstudio.core.runs.lock import live_trainer
    from sdstudio.core.runs.run_dir import list_runs

    for run in list_runs(_runs_root(), unstarted=True)[:10]:
        if (exclude is None or run.path.resolve() != exclude.resolve()) and live_trainer(run.path, run.status()):
            return run.path
    return None

