"""The run lock: one trainer per run directory, held for the run's whole lifetime.

`<run>/lock` holds an exclusive lock and the owner's pid and start time. The kernel drops the
lock when its process dies (kill -9 included), so a lock file left behind by a dead trainer is
stale by construction: the next trainer takes it over and says so. Anyone can ask whether a run
is being trained right now, from any process or SSH session on this machine.

The lock is an open-file-description (OFD) record lock on Linux: like `flock` it belongs to the
open file, not the process, so it dies with its holder and threads of one process conflict; unlike
`flock` it can be *tested* without being taken (F_OFD_GETLK). Asking who holds a run (the studio,
`sdstudio runs`, the queue runner ask often) therefore never takes the lock, not even shared for
an instant, and can never make a trainer that starts at that moment fail with "already being
trained". A retry in the trainer would only narrow that window: under load it can still be missed.

A trainer also takes the exclusive `flock` that sdstudio used before, so a trainer of an older
sdstudio that still runs (an upgrade during a detached run) keeps a newer one off its run; only
probes of such an older sdstudio take that flock shared, so against it the trainer retries for a
moment (FLOCK_RETRY_S). Where OFD locks do not exist (not Linux) the flock is the lock, probed shared.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError

LOCK_NAME = "lock"
OFD = hasattr(fcntl, "F_OFD_GETLK")  # Linux 3.15+
FLOCK_RETRY_S = 0.5  # how long a trainer retries the flock against a probe that holds it shared
_FLOCK_STRUCT = "hhqqi"  # struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid


def _ofd(fd: int, kind: int, command: int) -> bytes:
    return fcntl.fcntl(fd, command, struct.pack(_FLOCK_STRUCT, kind, os.SEEK_SET, 0, 0, 0))


def _flock_retrying(fd: int) -> bool:
    deadline = time.monotonic() + FLOCK_RETRY_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on the whole file open as `fd` (read-write); False if someone holds it."""
    if OFD:
        try:
            _ofd(fd, fcntl.F_WRLCK, fcntl.F_OFD_SETLK)
        except (BlockingIOError, PermissionError):  # EAGAIN / EACCES: held by another open file
            return False
    if _flock_retrying(fd):
        return True
    if OFD:
        _ofd(fd, fcntl.F_UNLCK, fcntl.F_OFD_SETLK)
    return False


def unlock(fd: int) -> None:
    if OFD:
        _ofd(fd, fcntl.F_UNLCK, fcntl.F_OFD_SETLK)
    fcntl.flock(fd, fcntl.LOCK_UN)


def is_locked(fd: int) -> bool:
    """Does another open file hold a lock on this file? Tests without taking anything (OFD)."""
    if OFD:
        return struct.unpack(_FLOCK_STRUCT, _ofd(fd, fcntl.F_RDLCK, fcntl.F_OFD_GETLK))[0] != fcntl.F_UNLCK
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


class RunLockedError(SdstudioError):
    """Another live process already trains this run."""


@dataclass
class RunLock:
    path: Path
    fd: int
    pid: int
    started: float
    stale_pid: int | None = None  # the dead owner a stale lock file named, if any

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)  # an unlocked, empty file: nobody owns the run now
            unlock(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1


def lock_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / LOCK_NAME


def _read_owner(fd: int) -> dict[str, float]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def acquire(run_dir: str | os.PathLike[str]) -> RunLock:
    """Take the run's lock or raise RunLockedError naming the process that holds it."""
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    if not try_lock(fd):
        owner = _read_owner(fd)
        os.close(fd)
        who = f"process {int(owner['pid'])}" if owner.get("pid") else "another process"
        raise RunLockedError(
            f"{Path(run_dir)} is already being trained by {who}; stop it first "
            f"(`sdstudio stop {Path(run_dir)}`) or follow it with `sdstudio --run {Path(run_dir)}`") from None
    previous = _read_owner(fd)
    stale = int(previous["pid"]) if previous.get("pid") else None
    now = time.time()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps({"pid": os.getpid(), "started": now}).encode("utf-8"))
    os.fsync(fd)
    return RunLock(path, fd, os.getpid(), now, stale_pid=stale if stale != os.getpid() else None)


def holder(run_dir: str | os.PathLike[str]) -> dict[str, float] | None:
    """{'pid', 'started'} of the live process training this run, or None when nobody holds its lock.

    A separate open file description conflicts with any holder, this process's own threads included.
    Only tests the lock (see the module docstring): a trainer taking it at the same moment succeeds.
    """
    path = lock_path(run_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return (_read_owner(fd) or {"pid": 0.0, "started": 0.0}) if is_locked(fd) else None
    finally:
        os.close(fd)


def has_lock_file(run_dir: str | os.PathLike[str]) -> bool:
    return lock_path(run_dir).exists()


def live_trainer(run_dir: str | os.PathLike[str], status: dict[str, Any]) -> dict[str, Any] | None:
    """The one liveness check: {'pid', 'started'} of the live trainer of this run, else None.

    The lock's holder when the run has a lock file; for a run from before the lock existed, the
    pid status.json records while its state is running and that process exists (then 'legacy' is
    True: it takes signals, not command files).
    """
    if has_lock_file(run_dir):
        return holder(run_dir)
    pid = int(status.get("pid") or 0) if str(status.get("pid") or "0").isdigit() else 0
    if status.get("state") not in ("running", "starting") or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return {"pid": pid, "started": status.get("started") or 0.0, "legacy": True}
