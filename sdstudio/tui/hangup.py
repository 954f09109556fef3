"""Hang-up: after SIGHUP or the loss of the terminal the studio is gone within a few seconds.

Why not just Textual's exit: once the terminal is gone, Textual's output thread dies on the
first failed write and the main thread then blocks for ever on that thread's full queue (an
orphan re-parented to init, holding the GPU if a model was loaded). So the guard

* listens for SIGHUP with a plain `signal.signal` handler (it runs even while the event loop is
  blocked) and, on a terminal, for POLLHUP on stdin from a small thread (a terminal that closes
  without sending SIGHUP);
* points stdout/stderr at /dev/null so that drawing can no longer fail;
* does the hang-up contract for a running training at once, from the handler (the trainer's flags
  are thread-safe): save a checkpoint, mark the run stopped at its step (the checkpoint's validation
  loss and samples are left pending: nothing optional runs after a hang-up, see training/stopping.py);
* asks the app to exit normally, and starts a watchdog that waits for the trainer (at most
  TRAINER_GRACE_S) and then ends the process with `os._exit` if Textual's shutdown has not;
* after a hang-up, `run_app` also leaves with `os._exit` once Textual has closed: tearing down
  torch and a loaded model at interpreter exit can take seconds, and everything worth keeping
  (checkpoint, status) is on disk by then.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

TRAINER_GRACE_S = 3.8  # a step plus a LoRA checkpoint; the checkpoint write is atomic either way
EXIT_DEADLINE_S = 4.5  # from the hang-up to the forced exit: under the 5 s a user may rely on
SHUTDOWN_GRACE_S = 1.0  # once the trainer is idle, Textual's own exit gets this long


def detach_from_terminal() -> None:
    """stdout/stderr (and stdin) to /dev/null: nothing the app still draws can fail or block."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)


class HangupGuard:
    """Turns a hang-up into a bounded exit. `on_hangup` runs on the event loop when it can;
    `stop_training` runs at once, in whatever thread noticed the hang-up."""

    def __init__(self, on_hangup: Callable[[], None], stop_training: Callable[[], None],
                 trainer_idle: threading.Event) -> None:
        self._on_hangup = on_hangup
        self._stop_training = stop_training
        self._trainer_idle = trainer_idle
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.triggered_at: float | None = None

    def install(self) -> None:
        """Call from the app's event loop (on mount). Silently does less off the main thread (tests)."""
        self._loop = asyncio.get_running_loop()
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            try:
                signal.signal(signal.SIGHUP, lambda _signum, _frame: self.trigger("SIGHUP"))
            except (ValueError, OSError):
                pass
        stdin = sys.__stdin__
        try:
            fd = stdin.fileno() if stdin is not None and stdin.isatty() else -1
        except (OSError, ValueError):
            fd = -1
        if fd >= 0 and hasattr(select, "poll"):
            threading.Thread(target=self._watch_terminal, args=(os.dup(fd),), name="sdstudio-hangup-watch",
                             daemon=True).start()

    def _watch_terminal(self, fd: int) -> None:
        poller = select.poll()
        poller.register(fd, 0)  # POLLHUP / POLLERR are always reported
        try:
            while self.triggered_at is None:
                if any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in poller.poll(500)):
                    self.trigger("terminal closed")
                    return
        finally:
            os.close(fd)

    def trigger(self, why: str = "SIGHUP") -> None:
        """The terminal is gone: contract first, then exit, forced after EXIT_DEADLINE_S."""
        with self._lock:
            if self.triggered_at is not None:
                return
            self.triggered_at = time.monotonic()
        detach_from_terminal()
        try:
            self._stop_training()
        finally:
            threading.Thread(target=self._watchdog, name="sdstudio-hangup-watchdog", daemon=True).start()
            if self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._on_hangup)
                except RuntimeError:  # the loop has closed: the watchdog ends the process
                    pass

    def _watchdog(self) -> None:
        start = self.triggered_at or time.monotonic()
        self._trainer_idle.wait(max(0.0, start + TRAINER_GRACE_S - time.monotonic()))
        # the trainer has saved and stopped (or ran out of time): Textual gets a moment to close
        end = min(start + EXIT_DEADLINE_S, time.monotonic() + SHUTDOWN_GRACE_S)
        time.sleep(max(0.0, end - time.monotonic()))
        os._exit(0 if self._trainer_idle.is_set() else 1)  # Textual's shutdown blocked: leave anyway

