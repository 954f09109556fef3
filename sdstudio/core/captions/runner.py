"""A captioning pass: which images, caption them in batches with progress, then write and log.

Nothing is written until `apply`: the CLI's --dry-run prints the proposals, and the studio's
review writes only those a person accepted. `apply` writes the changed captions into the
folder's store in one atomic write per file and appends the pass to captions.log.jsonl.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.captions import log, storage
from sdstudio.core.captions.compose import Style, compose, wants
from sdstudio.core.dataset import image_files, load_rgb
from sdstudio.core.errors import DatasetError


@dataclass
class Proposal:
    """One image's caption before and after the pass (`new` is what would be written)."""

    file_name: str
    old: str | None
    new: str
    raw: str = ""  # the model's own words, before trigger/prefix/suffix/limit

    @property
    def changed(self) -> bool:
        return self.new.strip() != (self.old or "").strip()


@dataclass
class Plan:
    root: Path
    store: str  # where captions go: the folder's store, or the one chosen for a caption-less folder
    todo: list[tuple[str, str | None]]  # (relative name, current caption) of the images this mode captions
    kept: int  # images this mode leaves alone (fill: already captioned)
    unreadable: list[str] = field(default_factory=list)  # "name: reason" of skipped images, filled while captioning


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    elapsed: float

    @property
    def images_per_s(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float:
        rate = self.images_per_s
        return (self.total - self.done) / rate if rate > 0 else float("nan")

    def line(self) -> str:
        eta = f"{self.eta_s:.0f}s" if self.eta_s == self.eta_s else "?"
        width = 24
        filled = int(width * self.done / max(1, self.total))
        return (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} images  "
                f"{self.images_per_s:.1f} images/s  ETA {eta}")


def plan(root: str | Path, style: Style, store: str | None = None) -> Plan:
    """The images a pass in `style.mode` would caption; `store` applies only to a folder without captions."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found")
    images = image_files(base)
    if not images:
        raise DatasetError(f"{base}: no images to caption")
    found = storage.detect_store(base, images)
    chosen = found or store or storage.METADATA
    if chosen not in storage.STORES:
        raise DatasetError(f"caption store {chosen!r}: one of {', '.join(storage.STORES)}")
    current = storage.read_captions(base, images, found)
    todo = [(rel, old) for rel, old in current.items() if wants(style, old)]
    return Plan(base, chosen, todo, len(current) - len(todo))


def run(plan_: Plan, captioner: Any, style: Style, prompt: str | None = None, batch_size: int = 8,
        max_new_tokens: int | None = None, progress: Callable[[Progress], None] | None = None,
        check: Callable[[], None] = lambda: None) -> list[Proposal]:
    """Caption every planned image in batches; `check` is called between batches (it raises to stop)."""
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size}: 1 or more")
    tokens = max_new_tokens or (max(16, 3 * style.max_words) if style.max_words else 60)
    out: list[Proposal] = []
    total, done, start = len(plan_.todo), 0, time.perf_counter()
    if progress:
        progress(Progress(0, total, 0.0))
    for i in range(0, total, batch_size):
        check()
        chunk, pictures = [], []
        for rel, old in plan_.todo[i:i + batch_size]:
            try:
                pictures.append(load_rgb(plan_.root / rel))
                chunk.append((rel, old))
            except (OSError, ValueError) as exc:
                plan_.unreadable.append(f"{rel}: unreadable image ({exc})")
        raws = captioner.caption(pictures, prompt, tokens) if pictures else []
        for (rel, old), raw in zip(chunk, raws):
            if raw.strip():
                out.append(Proposal(rel, old, compose(style, raw, old), raw))
            else:  # a trigger word alone is no caption
                plan_.unreadable.append(f"{rel}: the model wrote nothing")
        done += len(plan_.todo[i:i + batch_size])
        if progress:
            progress(Progress(done, total, time.perf_counter() - start))
    return out


def apply(plan_: Plan, proposals: list[Proposal], info: dict[str, Any]) -> dict[str, Any] | None:
    """Write the changed captions and log the pass (None when nothing changed)."""
    changed = [p for p in proposals if p.changed]
    if not changed:
        return None
    names = [p.file_name for p in changed]
    before = log.snapshot(plan_.root, storage.files_written(plan_.root, plan_.store, names))
    storage.write_captions(plan_.root, plan_.store, {p.file_name: p.new for p in changed})
    rows = [{"file_name": p.file_name, "previous": p.old, "caption": p.new} for p in changed]
    return log.record(plan_.root, before, {**info, "store": plan_.store}, rows)


def provenance(captioner: Any, style: Style, prompt: str | None) -> dict[str, Any]:
    """What the log records about who wrote a pass's captions."""
    return {"model": captioner.name, "family": captioner.family, "revision": captioner.revision,
            "prompt": prompt if prompt is not None else captioner.default_prompt, **asdict(style)}
