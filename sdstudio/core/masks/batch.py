"""The studio's whole-folder passes ("Mask all", "Crop all to subject"): proposed in a worker,
written only when accepted.

A thin layer over the CLI's passes (`making` and `cropping`), so the studio and
`sdstudio dataset mask|crop` pick the same images, write the same files and log the same undo
entries. What it adds: the results are held (not written) until `write` is called, and a stop
check that ends a pass early without leaving anything behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.masks import cropping, making
from sdstudio.core.masks.crops import Box
from sdstudio.core.masks.source import coverage, load_mask

ProgressFn = Callable[[int, int], None]  # (done, total)
Stop = Callable[[], bool]


class _Stopped(Exception):
    pass


def _checker(stop: Stop | None) -> Callable[[], None]:
    def check() -> None:
        if stop is not None and stop():
            raise _Stopped

    return check


@dataclass
class Proposal:
    """What a pass would write: masks ("L" images) or crop boxes by file name, and the files it skipped."""

    masks: dict[str, Any] = field(default_factory=dict)
    crops: dict[str, Box] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why
    coverages: dict[str, float] = field(default_factory=dict)
    mask_plan: making.MaskPlan | None = None
    made: list[making.Made] = field(default_factory=list)
    crop_plan: cropping.CropPlan | None = None

    @property
    def count(self) -> int:
        return len(self.masks) + len(self.crops)

    @property
    def mean_coverage(self) -> float | None:
        return sum(self.coverages.values()) / len(self.coverages) if self.coverages else None

    def line(self) -> str:
        """One line a person reads before accepting."""
        what = f"{len(self.masks)} masks" if self.masks else f"{len(self.crops)} crops"
        mean = self.mean_coverage
        parts = [what, f"mean coverage {mean:.1%}" if mean is not None else "",
                 f"{len(self.skipped)} skipped" if self.skipped else ""]
        return " · ".join(p for p in parts if p)

    def write(self, info: dict[str, Any]) -> str | None:
        """Write what was proposed (logged for `sdstudio dataset mask|crop --undo`); the line to
        show, None when nothing was written."""
        if self.mask_plan is not None and self.made:
            making.apply(self.mask_plan, self.made, info)
            return f"wrote {len(self.made)} masks (NAME-mask.png beside each image; undo: sdstudio dataset mask --undo)"
        if self.crop_plan is not None and cropping.apply(self.crop_plan, info) is not None:
            where = self.crop_plan.root
            from sdstudio.core.masks.crops import crops_file

            return f"wrote {len(self.crops)} crop boxes to {crops_file(where).name} (undo: sdstudio dataset crop --undo)"
        return None


def _why(line: str) -> tuple[str, str]:
    name, _, why = line.partition(": ")
    return name, why


def propose_masks(root: Path, names: Iterable[str], masker: Any, prompt: str, replace: bool = False,
                  progress: ProgressFn | None = None, stop: Stop | None = None) -> Proposal | None:
    """A mask per listed image from `masker` (None when stopped): `making.plan` picks them (fill
    keeps existing masks), `making.run` makes them; nothing is written."""
    plan = making.plan(root, "replace" if replace else "fill")
    wanted = set(names)
    plan.todo = [n for n in plan.todo if n in wanted]
    out = Proposal(mask_plan=plan)
    out.skipped.update(_why(line) for line in plan.shadowed)
    out.skipped.update({n: "has a mask" for n in wanted if n not in plan.todo and n not in out.skipped})
    report = (lambda p: progress(p.done, p.total)) if progress is not None else None
    try:
        for m in making.run(plan, masker, prompt, progress=report, check=_checker(stop)):
            out.made.append(m)
            out.masks[m.file_name] = m.mask
            out.coverages[m.file_name] = m.coverage
    except _Stopped:
        return None
    out.skipped.update(_why(line) for line in plan.unreadable)
    return out


def propose_crops(root: Path, resolution: int | None, padding: float = 0.1, progress: ProgressFn | None = None,
                  stop: Stop | None = None) -> Proposal | None:
    """"Crop to subject" for each masked image without a box (`cropping.propose`, fill mode: boxes
    already there, e.g. set by hand, stay); at each image's bucket's aspect when `resolution` is
    given (buckets), else square. None when stopped."""
    try:
        plan = cropping.propose(root, None if resolution else 1.0, padding, "fill", resolution=resolution or 512,
                                progress=progress, check=_checker(stop))
    except _Stopped:
        return None
    out = Proposal(crop_plan=plan)
    out.skipped.update(_why(line) for line in plan.skipped)
    for p in plan.proposals:
        if p.new is not None:
            out.crops[p.file_name] = p.new
            mask = load_mask(Path(root) / p.file_name, Path(root))
            if mask is not None:
                out.coverages[p.file_name] = coverage(mask)
    return out


def mask_coverages(root: Path, names: Iterable[str], mask_dir: Path | None = None) -> dict[str, float | None]:
    """Each image's mask coverage in [0, 1], None when it has no (readable) mask."""
    out: dict[str, float | None] = {}
    for name in names:
        try:
            mask = load_mask(root / name, root, mask_dir)
        except (OSError, ValueError):
            mask = None
        out[name] = coverage(mask) if mask is not None else None
    return out
