"""A mask-making pass: which images get a mask, shaping the model's output, atomic writes, undo.

`plan` picks the images (fill: those without a mask; replace: every image whose mask would be
read from where this pass writes), `run` asks a masker for each one's mask (a generator, so the
studio can hold the results until a person accepts them), `apply` writes each as NAME-mask.png
beside its image or mask_dir/NAME.png, atomically and with the umask's mode, and logs the pass in
DIR/masks.log.jsonl so that `undo` restores the folder byte for byte.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.captions.runner import Progress
from sdstudio.core.dataset import image_files, load_rgb
from sdstudio.core.errors import DatasetError, SdstudioError
from sdstudio.core.io import atomic
from sdstudio.core.io.edit_log import EditLog
from sdstudio.core.masks.shaping import Shaping
from sdstudio.core.masks.source import (ALPHA, BESIDE, MASK_DIR, MASKS_LOG, coverage, find_mask, mask_beside,
                                        mask_in_dir)

MODES = ("fill", "replace")
RANK = {ALPHA: 0, BESIDE: 1, MASK_DIR: 2}  # mask precedence (core/masks/source.py)


def masks_log(root: Path) -> EditLog:
    return EditLog(Path(root), MASKS_LOG, "masking pass")


@dataclass
class MaskPlan:
    root: Path
    mask_dir: Path | None  # where masks go; None: NAME-mask.png beside each image
    mode: str
    todo: list[str]  # relative names of the images this pass masks
    kept: int  # images that keep the mask they have (fill)
    shadowed: list[str] = field(default_factory=list)  # "name: why" of images whose mask would not be read
    unreadable: list[str] = field(default_factory=list)  # "name: reason", filled while masking

    def target(self, rel: str) -> Path:
        image = self.root / rel
        return mask_in_dir(image, self.root, self.mask_dir) if self.mask_dir else mask_beside(image)


def plan(root: str | Path, mode: str = "fill", mask_dir: str | Path | None = None) -> MaskPlan:
    """The images a pass in `mode` masks. An image whose mask comes from a source read before the
    one this pass writes (its alpha channel; NAME-mask.png when writing to mask_dir) is left alone:
    a new mask there would never be used."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found")
    if mode not in MODES:
        raise SdstudioError(f"--mode {mode!r}: one of {', '.join(MODES)}")
    folder = Path(mask_dir) if mask_dir else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise DatasetError(f"--mask-dir {folder}: exists and is not a folder")
    if folder is not None and folder.resolve().is_relative_to(base.resolve()):
        raise DatasetError(f"--mask-dir {folder} is inside the dataset {base}: its masks would be read as training "
                           "images; put the mask folder beside the dataset, or leave --mask-dir out (NAME-mask.png)")
    images = image_files(base)
    if not images:
        raise DatasetError(f"{base}: no images to mask")
    writes = MASK_DIR if folder else BESIDE
    out = MaskPlan(base, folder, mode, [], 0)
    for image in images:
        rel = image.relative_to(base).as_posix()
        ref = find_mask(image, base, folder)
        if ref is None:
            out.todo.append(rel)
        elif RANK[ref.origin] < RANK[writes]:
            where = "its alpha channel" if ref.origin == ALPHA else ref.path.name
            out.shadowed.append(f"{rel}: keeps its mask from {where}, which is read first")
        elif mode == "replace":
            out.todo.append(rel)
        else:
            out.kept += 1
    return out


@dataclass(frozen=True)
class Made:
    file_name: str
    mask: Any  # PIL "L", the image's size
    coverage: float


def run(plan_: MaskPlan, masker: Any, prompt: str, shaping: Shaping = Shaping(),
        progress: Callable[[Progress], None] | None = None, check: Callable[[], None] = lambda: None) -> Iterator[Made]:
    """Mask each planned image in turn; `check` is called before each (it raises to stop)."""
    if not prompt or not prompt.strip():
        raise SdstudioError("--prompt is required: what the subject is, e.g. --prompt \"the cat\"")
    total, start = len(plan_.todo), time.perf_counter()
    if progress:
        progress(Progress(0, total, 0.0))
    for done, rel in enumerate(plan_.todo, start=1):
        check()
        try:
            picture = load_rgb(plan_.root / rel)
        except (OSError, ValueError) as exc:
            plan_.unreadable.append(f"{rel}: unreadable image ({exc})")
        else:
            mask = shaping.apply(masker.mask(picture, prompt))
            if mask.size != picture.size:
                raise SdstudioError(f"masker {getattr(masker, 'name', masker)!r} gave a {mask.size} mask "
                                    f"for {rel} ({picture.size})")
            yield Made(rel, mask, coverage(mask))
        if progress:
            progress(Progress(done, total, time.perf_counter() - start))


def apply(plan_: MaskPlan, made: Iterable[Made], info: dict[str, Any]) -> dict[str, Any] | None:
    """Write each mask atomically as it comes and log the pass (also when stopped part way, so
    undo still covers every file written). None when nothing was written."""
    log = masks_log(plan_.root)
    before: dict[str, str | None] = {}
    rows: list[dict[str, Any]] = []
    try:
        for m in made:
            target = plan_.target(m.file_name)
            before.update(log.snapshot([target]))
            rows.append({"file_name": m.file_name, "mask": log.rel(target),
                         "replaced": target.is_file(), "coverage": round(m.coverage, 4)})
            atomic.save_image(m.mask, target)
    finally:
        entry = log.record(before, {**info, "mode": plan_.mode,
                                    "mask_dir": str(plan_.mask_dir) if plan_.mask_dir else None}, rows) if rows else None
    return entry


def undo(root: str | Path, force: bool = False) -> dict[str, Any]:
    """Undo the newest masking pass of the folder (see `sdstudio.core.io.edit_log`)."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found")
    return masks_log(base).undo(force)
