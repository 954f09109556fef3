"""Commands to a running run from anywhere: stop, sample now, save now.

They travel through the run directory, the only contract between processes:

    <run>/commands/<id>.json   one request per file, written atomically by `send_command`
    <run>/status.json          "commands": the trainer's acknowledgements (id, command, received)

A `CommandReader` thread in the trainer's process polls the folder, turns each request into the
matching `TrainerControl` flag (which the loop checks between steps and inside long phases),
records the acknowledgement in status.json and logs it, then deletes the request. The trainer
itself is not changed: `training.launch.train_with_commands` wraps it with the run lock and the reader.

Signals to the recorded pid are the fallback for a trainer that does not acknowledge (an older
sdstudio, a wedged reader): SIGTERM / SIGUSR1 / SIGUSR2 where the trainer installed
`install_signal_handlers`, else SIGINT (Ctrl-C) for stop.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from sdstudio.core.runs import lock as run_lock
from sdstudio.core.errors import SdstudioError
from sdstudio.core.events import EventCallback, LogEvent, TrainerControl
from sdstudio.core.io import atomic
from sdstudio.core.runs.run_dir import RUNNING, RunDir

COMMANDS = ("stop", "sample", "save")
STARTING = "starting"  # status of a run whose trainer holds the lock but has not written status yet
ACKS_KEPT = 20
POLL_SECONDS = 0.25
SIGNALS = {"stop": "SIGTERM", "sample": "SIGUSR1", "save": "SIGUSR2"}
DONE_WORDS = {"stop": "stopping after the current step (a checkpoint is saved)",
              "sample": "validation samples after the current step",
              "save": "checkpoint after the current step"}


def commands_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "commands"


def _apply(control: TrainerControl, command: str) -> None:
    {"stop": control.request_stop, "sample": control.request_sample, "save": control.request_save}[command]()


class CommandReader:
    """Polls `<run>/commands` in a daemon thread of the trainer's process."""

    def __init__(self, run_dir: str | os.PathLike[str], control: TrainerControl,
                 on_event: EventCallback | None = None, signals: bool = False,
                 interval: float = POLL_SECONDS) -> None:
        self.run = RunDir(run_dir)
        self.control = control
        self.on_event = on_event
        self.signals = signals
        self.interval = interval
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, total: int | None = None) -> "CommandReader":
        """Clear stale requests, mark the run "starting" (with its planned `total` steps, so a
        follower shows n/total from the start) and poll in the background."""
        folder = commands_dir(self.run.path)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.json"):  # addressed to an earlier trainer of this run
            stale.unlink(missing_ok=True)
        # "starting" until the trainer writes its first status: a follower never mistakes the
        # previous trainer's end state (a resumed run was "stopped") for this one's
        self.run.update_status(state=STARTING, pid=os.getpid(), updated=time.time(), commands=[],
                               reader={"pid": os.getpid(), "signals": self.signals},
                               **({"total": int(total)} if total else {}))
        self._thread = threading.Thread(target=self._loop, name="sdstudio-commands", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._quit.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.poll_once()  # anything that arrived at the very end is still acknowledged

    def _loop(self) -> None:
        while not self._quit.wait(self.interval):
            try:
                self.poll_once()
            except OSError:
                continue  # a vanished file or a full disk: try again next tick

    def poll_once(self) -> list[dict[str, Any]]:
        """Apply and acknowledge every pending request, oldest first."""
        done = []
        for path in sorted(commands_dir(self.run.path).glob("*.json")):
            try:
                request = json.loads(path.read_text(encoding="utf-8"))
                command = str(request["command"])
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if command in COMMANDS:
                _apply(self.control, command)
                ack = {"id": str(request.get("id", path.stem)), "command": command,
                       "sent": request.get("sent"), "received": time.time(), "from": request.get("from")}
                acks = [a for a in self.run.status().get("commands") or [] if isinstance(a, dict)]
                self.run.update_status(commands=(acks + [ack])[-ACKS_KEPT:])
                done.append(ack)
                if self.on_event is not None:
                    self.on_event(LogEvent(f"{command} requested ({request.get('from') or 'elsewhere'}): "
                                           f"{DONE_WORDS[command]}"))
            path.unlink(missing_ok=True)
        return done


def install_signal_handlers(control: TrainerControl) -> None:
    """SIGTERM stops, SIGUSR1 samples, SIGUSR2 saves (main thread only): the fallback route."""
    for command, name in SIGNALS.items():
        signal.signal(getattr(signal, name), lambda _sig, _frame, c=command: _apply(control, c))


def _acked(run: RunDir, command_id: str) -> dict[str, Any] | None:
    for ack in run.status().get("commands") or []:
        if isinstance(ack, dict) and ack.get("id") == command_id:
            return ack
    return None


def send_command(run_dir: str | os.PathLike[str], command: str, wait: float = 10.0,
                 source: str = "sdstudio") -> str:
    """Ask the trainer of `run_dir` to stop / sample / save; returns how it was delivered.

    Raises SdstudioError when no trainer runs that directory, naming its state.
    """
    if command not in COMMANDS:
        raise SdstudioError(f"unknown command {command!r} (known: {', '.join(COMMANDS)})")
    run = RunDir(run_dir)
    if not run.exists() and not run_lock.has_lock_file(run.path):
        raise SdstudioError(f"{run_dir}: not a run directory (no run.toml)")
    status = run.status()
    owner = run_lock.live_trainer(run.path, status)
    if owner is not None and owner.get("legacy"):
        return _signal_fallback(run, command, int(owner["pid"]), status)  # a trainer from before the lock existed
    if owner is None:
        state = status.get("state", "unknown")
        if state == RUNNING:
            state = "crashed — resumable"
        raise SdstudioError(f"{run_dir}: no trainer is running it (state: {state}); nothing to {command}")
    command_id = f"{time.time_ns()}-{os.getpid()}-{command}"
    atomic.write_json(commands_dir(run.path) / f"{command_id}.json",
                      {"id": command_id, "command": command, "sent": time.time(), "from": source})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _acked(run, command_id):
            return "acknowledged"
        time.sleep(0.1)
    if wait <= 0:
        return "sent"
    return _signal_fallback(run, command, int(owner.get("pid") or 0), run.status())


def _signal_fallback(run: RunDir, command: str, pid: int, status: dict[str, Any]) -> str:
    reader = status.get("reader") if isinstance(status.get("reader"), dict) else None
    if pid and reader and reader.get("signals"):
        os.kill(pid, getattr(signal, SIGNALS[command]))
        return f"signalled ({SIGNALS[command]} to pid {pid})"
    if pid and command == "stop" and reader is None:
        os.kill(pid, signal.SIGINT)  # what Ctrl-C does: save a checkpoint and stop
        return f"signalled (SIGINT to pid {pid})"
    raise SdstudioError(f"{run.path}: the trainer (pid {pid or '?'}) did not acknowledge {command!r}; "
                        f"see {run.path / 'logs' / 'trainer.log'}")


def is_rank_zero() -> bool:
    """False in the secondary processes of `accelerate launch` (only rank 0 owns the run)."""
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) in ("", "0")


def wait_until_stopped(run_dir: str | os.PathLike[str], timeout: float | None = None) -> dict[str, Any]:
    """Block until no trainer holds the run (it stopped, finished or died); returns its status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while run_lock.holder(run_dir) is not None:
        if deadline is not None and time.monotonic() > deadline:
            raise SdstudioError(f"{run_dir}: still running after {timeout:.0f} s")
        time.sleep(0.2)
    return RunDir(run_dir).status()


def report_command(run_dir: str, command: str, wait_done: bool = False) -> int:
    """What `sdstudio stop|sample|save` print: how the command went, and with --wait the end state."""
    how = send_command(run_dir, command, source=f"sdstudio {command} (pid {os.getpid()})")
    print(f"{command}: {how}; {DONE_WORDS[command]}", flush=True)
    if wait_done:
        status = wait_until_stopped(run_dir)
        latest = RunDir(run_dir).latest_checkpoint()
        print(f"{status.get('state')} at step {status.get('step')}"
              + (f"; latest checkpoint: {latest.path}" if latest else ""), flush=True)
    return 0
