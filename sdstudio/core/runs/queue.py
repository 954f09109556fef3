"""The run queue: the night's runs, one after another, in a file that survives a reboot.

    <runs>/queue.json         the entries, in order, each with its state (written atomically)
    <runs>/queue/<id>.toml    each entry's resolved config, frozen when it was queued
    <runs>/queue/runner.log   what the background runner did
    <runs>/queue.lock         flock held while someone edits queue.json
    <runs>/queue-runner.lock  held by the one runner (a lock of core/runs/lock.py; see queue_runner.py)

Every change is a read-modify-write under queue.lock, so `sdstudio queue add` from one SSH
session and the runner in the background never lose each other's edits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.io import atomic

WAITING, RUNNING, FINISHED, FAILED, STOPPED = "queued", "running", "finished", "failed", "stopped"
QUEUE_FILE, QUEUE_DIR, EDIT_LOCK, RUNNER_LOCK = "queue.json", "queue", "queue.lock", "queue-runner.lock"


@dataclass
class QueueItem:
    id: str
    config: str  # the frozen config under <runs>/queue/
    label: str  # where it came from, for people (the config file's name)
    run_name: str | None
    run_dir: str
    total: int
    added: float
    state: str = WAITING
    resume: bool = False  # interrupted mid-run (a reboot): the next runner continues it
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "QueueItem":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Queue:
    items: list[QueueItem] = field(default_factory=list)

    def waiting(self) -> list[QueueItem]:
        return [i for i in self.items if i.state == WAITING]

    def find(self, item_id: str) -> QueueItem | None:
        return next((i for i in self.items if i.id == item_id), None)


def queue_file(root: Path) -> Path:
    return Path(root) / QUEUE_FILE


def load(root: Path) -> Queue:
    """The queue (empty when there is no file); a damaged file is refused with its path."""
    path = queue_file(root)
    if not path.exists():
        return Queue()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Queue([QueueItem.from_json(d) for d in data.get("items", [])])
    except (ValueError, TypeError, AttributeError) as exc:
        raise SdstudioError(f"{path}: not a queue file ({exc}); move it away to start a new queue") from None


def save(root: Path, queue: Queue) -> None:
    atomic.write_json(queue_file(root), {"version": 1, "items": [asdict(i) for i in queue.items]})


@contextlib.contextmanager
def edit(root: Path) -> Iterator[Queue]:
    """Read the queue under its edit lock; the changes are written when the block ends."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / EDIT_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        queue = load(root)
        yield queue
        save(root, queue)
    finally:
        os.close(fd)  # closing drops the flock


def _unique_name(stem: str, root: Path, queue: Queue) -> str:
    base = f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    taken = {i.run_name for i in queue.items} | ({p.name for p in root.iterdir()} if root.is_dir() else set())
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def add(root: Path, config: str | None, overrides: dict[str, Any],
        start_runner: Callable[[Path], object] | None = None) -> QueueItem:
    """Check the config now (a typo fails here, not at 3 a.m.), freeze it, and queue it.

    `start_runner` (queue_runner.ensure_runner) is called under the edit lock, so a runner that
    is just leaving cannot miss this entry."""
    from sdstudio.core.config import load_config, save_toml

    if not config and not overrides:
        raise SdstudioError("give a config file to queue (e.g. data/configs/demo-dreambooth.toml)")
    cfg = load_config(config, overrides)
    root = Path(root)
    stem = Path(config).stem if config else cfg.resolved_method
    with edit(root) as queue:
        if not cfg.output_dir and not cfg.run_name:
            cfg.run_name = _unique_name(stem, root, queue)
        run_dir = Path(cfg.output_dir) if cfg.output_dir else root / str(cfg.run_name)
        item_id = f"{int(time.time() * 1000):x}"
        while queue.find(item_id):
            item_id = f"{int(item_id, 16) + 1:x}"
        frozen = root / QUEUE_DIR / f"{item_id}.toml"
        save_toml(cfg, frozen)
        item = QueueItem(id=item_id, config=str(frozen), label=Path(config).name if config else "command line",
                         run_name=cfg.run_name, run_dir=str(run_dir.resolve()), total=cfg.max_train_steps,
                         added=time.time())
        queue.items.append(item)
        if start_runner is not None:
            start_runner(root)
    return item


def remove(root: Path, number: int) -> QueueItem:
    """Take entry `number` (1-based, as `queue list` shows) off the queue; a running one is refused."""
    with edit(root) as queue:
        if not 1 <= number <= len(queue.items):
            raise SdstudioError(f"no queue entry {number} (the queue has {len(queue.items)}; see `sdstudio queue list`)")
        item = queue.items[number - 1]
        if item.state == RUNNING:
            raise SdstudioError(f"entry {number} ({item.run_name}) is running: stop it with `sdstudio stop {item.run_dir}`")
        queue.items.remove(item)
    Path(item.config).unlink(missing_ok=True)
    return item


def clear(root: Path) -> int:
    """Remove every entry except a running one; returns how many went."""
    with edit(root) as queue:
        gone = [i for i in queue.items if i.state != RUNNING]
        queue.items = [i for i in queue.items if i.state == RUNNING]
    for item in gone:
        Path(item.config).unlink(missing_ok=True)
    return len(gone)
