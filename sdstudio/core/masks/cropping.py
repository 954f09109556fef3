"""A crop-to-subject pass: a box per image from its mask, written where the dataset keeps crops, undoable.

`propose` reads each image's mask and asks `subject_crop.propose_crop` for the subject's box
plus padding at the chosen aspect: a fixed W:H, the bucket the image falls in, or square (the
trainer's default crop). `apply` writes the boxes with `crops.write_crops` (metadata.jsonl rows
keep their captions; crops.jsonl otherwise) and logs the previous file in DIR/crops.log.jsonl so
`undo` restores it byte for byte. `clear` removes boxes the same undoable way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.dataset import check_dataset
from sdstudio.core.errors import DatasetError, SdstudioError
from sdstudio.core.io.edit_log import EditLog
from sdstudio.core.masks import crops
from sdstudio.core.masks.source import load_mask
from sdstudio.core.masks.subject_crop import propose_crop

MODES = ("fill", "replace")


def crops_log(root: Path) -> EditLog:
    return EditLog(Path(root), crops.CROPS_LOG, "crop pass")


def parse_aspect(text: str) -> float:
    """'W:H' (or a plain number) as width/height; SdstudioError says the form otherwise."""
    try:
        w, _, h = text.partition(":")
        value = float(w) / float(h) if h else float(w)
    except (ValueError, ZeroDivisionError):
        value = 0.0
    if not value > 0:
        raise SdstudioError(f"--aspect {text!r}: width:height, e.g. 1:1, 3:4 or 16:9")
    return value


@dataclass
class Proposal:
    file_name: str
    old: crops.Box | None
    new: crops.Box | None

    @property
    def changed(self) -> bool:
        return self.old != self.new


@dataclass
class CropPlan:
    root: Path
    proposals: list[Proposal] = field(default_factory=list)
    kept: int = 0  # images that keep the box they have (fill)
    skipped: list[str] = field(default_factory=list)  # "name: why no box was proposed"


def _images(root: Path) -> list[Any]:
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    usable = check_dataset(root, captions=False).usable
    if not usable:
        raise DatasetError(f"{root}: no usable images (see `sdstudio dataset check {root}`)")
    return usable


def propose(root: str | Path, aspect: float | None = 1.0, padding: float = 0.1, mode: str = "fill",
            mask_dir: str | Path | None = None, resolution: int = 512, step: int = 64,
            progress: Callable[[int, int], None] | None = None, check: Callable[[], None] = lambda: None) -> CropPlan:
    """A box per usable image that has a mask; `aspect` None takes each image's bucket's aspect
    (buckets of `resolution` and `step`, as training with enable_bucket places it). `check` is
    called before each image (it raises to stop); `progress(done, total)` after each."""
    from sdstudio.core.training import buckets

    if mode not in MODES:
        raise SdstudioError(f"--mode {mode!r}: one of {', '.join(MODES)}")
    if not 0 <= padding <= 2:
        raise SdstudioError(f"--padding {padding}: a share of the subject's larger side, 0 to 2 (e.g. 0.1)")
    base = Path(root)
    files = _images(base)
    placed = buckets.place_files(files, resolution, step) if aspect is None else {}
    old, _ = crops.read_crops(base)
    out = CropPlan(base)
    for done, f in enumerate(files, start=1):
        check()
        if progress is not None:
            progress(done, len(files))
        if mode == "fill" and f.name in old:
            out.kept += 1
            continue
        mask = load_mask(base / f.name, base, Path(mask_dir) if mask_dir else None)
        if mask is None:
            out.skipped.append(f"{f.name}: no mask (make one: sdstudio dataset mask {base} --prompt ...)")
            continue
        if mask.size != (f.width, f.height):
            from PIL import Image

            mask = mask.resize((f.width, f.height), Image.Resampling.NEAREST)
        if aspect is None:
            bw, bh = placed[f.name][0].bucket
            box = propose_crop(mask, bw / bh, padding)
        else:
            box = propose_crop(mask, aspect, padding)
        if box is None:
            out.skipped.append(f"{f.name}: empty mask, no subject to crop to")
            continue
        out.proposals.append(Proposal(f.name, old.get(f.name), box))
    return out


def clear(root: str | Path) -> CropPlan:
    """Proposals that remove every box of the folder."""
    base = Path(root)
    _images(base)
    old, _ = crops.read_crops(base)
    return CropPlan(base, [Proposal(name, box, None) for name, box in sorted(old.items())])


def apply(plan_: CropPlan, info: dict[str, Any]) -> dict[str, Any] | None:
    """Write the changed boxes in one atomic write and log the pass (None when nothing changed)."""
    changed = [p for p in plan_.proposals if p.changed]
    if not changed:
        return None
    log = crops_log(plan_.root)
    before = log.snapshot([crops.crops_file(plan_.root)])
    crops.write_crops(plan_.root, {p.file_name: p.new for p in changed})
    rows = [{"file_name": p.file_name, "previous": list(p.old) if p.old else None,
             "crop": list(p.new) if p.new else None} for p in changed]
    return log.record(before, {**info, "file": crops.crops_file(plan_.root).name}, rows)


def undo(root: str | Path, force: bool = False) -> dict[str, Any]:
    """Undo the newest crop pass of the folder."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found")
    return crops_log(base).undo(force)
