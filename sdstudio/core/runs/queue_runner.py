"""The one background runner that trains the queued runs one after another.

It is started on demand (by `queue add`, detached like `train --detach`), holds
<runs>/queue-runner.lock for its lifetime so there is only ever one, and exits when nothing
is waiting. Each run is an ordinary `sdstudio train` child whose output goes to the run's
logs/trainer.log; a failed run is recorded and the next one starts. An entry left "running"
by a runner that died (a reboot) is resumed from its checkpoint by the next runner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sdstudio.core.runs import lock as run_lock, queue as run_queue
from sdstudio.core.runs.detach import LOG_NAME, spawn
from sdstudio.core.runs.control import STARTING
from sdstudio.core.runs.run_dir import FAILED, FINISHED, RUNNING, STOPPED, RunDir

WAIT_SECONDS = 1.0


def _try_lock(path: Path) -> int | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    if not run_lock.try_lock(fd):
        os.close(fd)
        return None
    return fd


def runner_active(root: Path) -> bool:
    """Tested without taking the runner's lock, so a runner starting at that moment is not turned away."""
    try:
        fd = os.open(Path(root) / run_queue.RUNNER_LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        return run_lock.is_locked(fd)
    finally:
        os.close(fd)


def ensure_runner(root: Path) -> bool:
    """Start the background runner unless one is going; True when one was started."""
    root = Path(root).resolve()
    if runner_active(root):
        return False
    # the runner and its trainers write into this runs folder, whatever the caller's environment
    spawn(["queue", "run"], root / run_queue.QUEUE_DIR / "runner.log", extra_env={"SDSTUDIO_RUNS": str(root)})
    return True


def _log(text: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)


def _argv(item: run_queue.QueueItem) -> list[str]:
    if item.resume and RunDir(item.run_dir).exists():
        return ["train", "--resume", item.run_dir]
    return ["train", item.config]


def _outcome(item: run_queue.QueueItem, code: int | None) -> tuple[str, str | None]:
    """(state, error) of an entry whose trainer has ended: what its own status says when it wrote
    one (a stop by SIGTERM exits 143 but is "stopped"), else how the process ended. `code` is None
    when this runner did not start the trainer (it outlived an earlier runner)."""
    run = RunDir(item.run_dir)
    status = run.status()
    state = status.get("state")
    log = Path(item.run_dir) / "logs" / LOG_NAME
    written = float(status.get("updated") or 0) >= float(item.started or 0)  # by this entry's trainer
    if written and state in (FINISHED, STOPPED):
        return str(state), None
    if written and state == FAILED and status.get("error"):
        return run_queue.FAILED, str(status["error"])
    if written and state in (RUNNING, STARTING) and run_lock.live_trainer(run.path, status) is None:
        how = f", exit code {code}" if code else ""
        return run_queue.FAILED, (f"the trainer crashed at step {int(status.get('step') or 0)} (crashed — "
                                  f"resumable{how}); resume it with `sdstudio train --resume {item.run_dir}`; "
                                  f"see {log}")
    if code is not None and code < 0:
        return run_queue.FAILED, f"the trainer was killed by {signal.Signals(-code).name}; see {log}"
    ended = f"exited with code {code}" if code is not None else "ended without a final status"
    return run_queue.FAILED, f"the trainer {ended}{_said(log)}; see {log}"


def _said(log: Path) -> str:
    """': <its last error line>' from the end of a trainer's log (a refused start says why there)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return f": {errors[-1]}" if errors else ""


def _next(root: Path, fd: int) -> run_queue.QueueItem | None:
    """Claim the next entry, or release the runner lock inside the edit lock when none is left
    (so a `queue add` racing with our exit starts a new runner)."""
    with run_queue.edit(root) as queue:
        for item in queue.items:  # left "running" by a runner that died: resume it (or wait for it)
            if item.state == run_queue.RUNNING:
                if run_lock.holder(item.run_dir) is not None:
                    return item
                item.state, item.resume = run_queue.WAITING, True
        waiting = queue.waiting()
        if not waiting:
            os.close(fd)
            return None
        item = waiting[0]
        item.state, item.started, item.exit_code, item.error = run_queue.RUNNING, time.time(), None, None
        return item


def _leave(_sig: int, _frame: object) -> None:
    _log("terminated: the entry in progress is resumed by the next runner")
    raise SystemExit(143)


def _wait_unlocked(run_dir: str) -> None:
    while run_lock.holder(run_dir) is not None:
        time.sleep(WAIT_SECONDS)


def run_queue_loop(root: Path) -> int:
    """Train every waiting entry; returns when the queue is empty (0) or another runner has it (1)."""
    root = Path(root).resolve()
    fd = _try_lock(root / run_queue.RUNNER_LOCK)
    if fd is None:
        _log("another queue runner is active; leaving")
        return 1
    _log(f"queue runner started (pid {os.getpid()})")
    # a shutdown (SIGTERM) must not record the entry in progress as done: the runner leaves at once,
    # the entry stays "running" and the next runner resumes it from its checkpoint
    signal.signal(signal.SIGTERM, _leave)
    while True:
        item = _next(root, fd)
        if item is None:
            _log("queue empty; runner exits")
            return 0
        code: int | None
        if run_lock.holder(item.run_dir) is not None:  # its trainer outlived an earlier runner
            _log(f"waiting for {item.run_name}, still training from an earlier runner")
            _wait_unlocked(item.run_dir)
            code = None  # not our child: its exit code is unknown; its status tells how it ended
        else:
            _log(f"starting {item.run_name or item.run_dir} ({item.label})" + (" [resume]" if item.resume else ""))
            log = Path(item.run_dir) / "logs" / LOG_NAME
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as out:
                # Popen + wait, not subprocess.call: call() kills the trainer if the runner is interrupted
                trainer = subprocess.Popen([sys.executable, "-m", "sdstudio", *_argv(item)], stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT)
            code = trainer.wait()
        state, error = _outcome(item, code)
        with run_queue.edit(root) as queue:
            current = queue.find(item.id)
            if current is not None:
                current.state, current.error, current.exit_code, current.ended = state, error, code, time.time()
        _log(f"{item.run_name or item.run_dir}: {state}" + (f" ({error})" if error else ""))
