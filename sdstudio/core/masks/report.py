"""What `dataset check` says about masks and crop boxes: each image's mask coverage and where
the mask comes from, the masks that cannot be right (empty, full, another size, unreadable), the
crop rows that are malformed or reach outside their image, and the dataset's coverage summary,
so nobody trains with masked_loss on masks that are missing or wrong without knowing it.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.masks import crops
from sdstudio.core.masks.source import ALPHA, coverage, find_mask, read_mask

EMPTY, FULL, SIZE, UNREADABLE = "empty", "full", "size", "unreadable"


@dataclass
class ImageMask:
    """One image's mask and crop. `coverage` is the mask's mean (0-1), None without a readable mask."""

    name: str
    origin: str | None = None  # alpha, beside, mask_dir; None: no mask
    mask_file: str = ""  # the file holding it, relative to the dataset when inside it
    coverage: float | None = None
    flag: str = ""  # empty, full, size, unreadable (see `problem` for what to do)
    problem: str = ""
    crop: tuple[int, int, int, int] | None = None
    crop_problem: str = ""


@dataclass
class MasksReport:
    root: Path
    mask_dir: Path | None
    crops_file: str  # metadata.jsonl or crops.jsonl
    images: list[ImageMask] = field(default_factory=list)
    bad_crop_rows: list[tuple[int, str]] = field(default_factory=list)  # (line, what is wrong)
    crops_for_missing: list[str] = field(default_factory=list)  # crop rows naming no image of the folder

    def by_name(self) -> dict[str, ImageMask]:
        return {m.name: m for m in self.images}

    def summary(self) -> dict[str, Any]:
        masked = [m for m in self.images if m.origin]
        covers = [m.coverage for m in masked if m.coverage is not None]
        origins: dict[str, int] = {}
        for m in masked:
            origins[m.origin or ""] = origins.get(m.origin or "", 0) + 1
        return {
            "images": len(self.images), "with_mask": len(masked), "origins": origins,
            "mean_coverage": statistics.fmean(covers) if covers else None,
            "min_coverage": min(covers) if covers else None, "max_coverage": max(covers) if covers else None,
            **{flag: sum(m.flag == flag for m in masked) for flag in (EMPTY, FULL, SIZE, UNREADABLE)},
            "crops": sum(m.crop is not None for m in self.images), "crops_file": self.crops_file,
            "bad_crop_rows": len(self.bad_crop_rows),
            "crops_outside": sum(bool(m.crop_problem) for m in self.images),
            "crops_for_missing": len(self.crops_for_missing),
        }

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "mask_dir": str(self.mask_dir) if self.mask_dir else None,
                "images": [asdict(m) for m in self.images],
                "bad_crop_rows": [{"line": n, "reason": r} for n, r in self.bad_crop_rows],
                "crops_for_missing": self.crops_for_missing}


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _judge(entry: ImageMask, mask: Any, size: tuple[int, int], redo: str) -> None:
    """Set the flag and what to do for a mask that cannot be what the person meant."""
    if entry.origin == ALPHA:
        where = "its alpha channel"
    else:
        where = entry.mask_file
    if mask.size != size:
        entry.flag = SIZE
        entry.problem = (f"mask {where} is {mask.size[0]}x{mask.size[1]} but the image is {size[0]}x{size[1]}: "
                         f"a mask must match its image pixel for pixel; remake it at the image's size ({redo})")
    elif entry.coverage == 0.0:
        entry.flag = EMPTY
        entry.problem = (f"empty mask (0 %) in {where}: with masked_loss this image teaches nothing; "
                         f"remake it ({redo}) or delete it")
    elif entry.coverage == 1.0:
        entry.flag = FULL
        entry.problem = f"full mask (100 %) in {where}: the same as no mask; remake it ({redo}) or delete it"


def check_masks(root: str | Path, images: list[tuple[str, int, int]], mask_dir: str | Path | None = None) -> MasksReport:
    """The masks and crops of `images` ((name relative to root, width, height) of each decoded image)."""
    base = Path(root)
    folder = Path(mask_dir) if mask_dir else None
    boxes, bad = crops.read_crops(base)
    out = MasksReport(base, folder, crops.crops_file(base).name, bad_crop_rows=bad)
    redo = f"sdstudio dataset mask {base} --mode replace ..."
    for name, width, height in images:
        entry = ImageMask(name)
        ref = find_mask(base / name, base, folder)
        if ref is not None:
            entry.origin, entry.mask_file = ref.origin, _shown(ref.path, base)
            try:
                mask = read_mask(ref)
            except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad mask, named
                entry.flag = UNREADABLE
                entry.problem = f"unreadable mask {entry.mask_file} ({str(exc).strip() or type(exc).__name__}): replace it"
            else:
                entry.coverage = coverage(mask)
                _judge(entry, mask, (width, height), redo)
        box = boxes.pop(name, None)
        if box is not None:
            entry.crop = box
            x, y, w, h = box
            if x + w > width or y + h > height:
                entry.crop_problem = (f"crop [{x}, {y}, {w}, {h}] reaches outside the {width}x{height} image; "
                                      f"fix its row in {out.crops_file} or redo it "
                                      f"(sdstudio dataset crop {base} --to-subject --mode replace)")
        out.images.append(entry)
    out.crops_for_missing = sorted(boxes)
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def format_lines(report: MasksReport) -> list[str]:
    """The text `dataset check` prints about masks and crops (nothing about crops when there are none)."""
    s = report.summary()
    lines: list[str] = []
    if s["with_mask"]:
        width = max(len(m.name) for m in report.images)
        lines.append("masks (white = subject; alpha > NAME-mask.png > mask_dir/NAME.png):")
        for m in report.images:
            cover = _pct(m.coverage) if m.origin else "no mask"
            mark = "!" if m.flag or m.crop_problem else " "
            box = "crop " + ",".join(map(str, m.crop[:2])) + f" {m.crop[2]}x{m.crop[3]}" if m.crop else ""
            lines.append(f"  {mark} {m.name:<{width}}  {cover:>8}  {m.origin or '':<8}  {box:<18}  {m.problem}".rstrip())
        origins = ", ".join(f"{n} {o}" for o, n in sorted(s["origins"].items()))
        lines.append(f"{s['with_mask']} of {s['images']} images have masks ({origins}); coverage mean "
                     f"{_pct(s['mean_coverage'])}, min {_pct(s['min_coverage'])}, max {_pct(s['max_coverage'])}; "
                     f"{s[EMPTY]} empty, {s[FULL]} full, {s[SIZE]} of another size, {s[UNREADABLE]} unreadable")
    else:
        where = f" or {report.mask_dir}/NAME.png" if report.mask_dir else ""
        lines.append(f"masks: none (an image's alpha channel, NAME-mask.png beside it{where}; "
                     f"make them with `sdstudio dataset mask {report.root} --prompt ...`)")
    for m in report.images:
        if m.crop_problem:
            lines.append(f"  ! {m.name}: {m.crop_problem}")
    for lineno, reason in report.bad_crop_rows:
        lines.append(f"  ! {report.crops_file}:{lineno}: {reason}; the image is cropped as if it had no box until fixed")
    for name in report.crops_for_missing:
        lines.append(f"  ! {report.crops_file}: crop for {name}, which is not an image of this folder")
    if s["crops"] or s["bad_crop_rows"] or s["crops_for_missing"]:
        lines.append(f"crops: {s['crops']} boxes in {report.crops_file}; {s['bad_crop_rows']} malformed rows, "
                     f"{s['crops_outside']} outside their image, {s['crops_for_missing']} for missing files")
    return lines
