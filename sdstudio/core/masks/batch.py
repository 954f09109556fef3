"""A folder's masks and crops, proposed in one pass and written only when accepted.

The Dataset screen's "Mask all" and "Crop all to subject" run `propose_masks` / `propose_crops`
in a worker (each takes a progress callback and a stop check, so a cancelled pass leaves
nothing behind), show the result, and call `write_masks` / `write_crops` on accept. Nothing
here writes before that call. Coverage figures use `source.coverage`, the same as training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.masks.crops import Box
from sdstudio.core.masks.source import coverage, find_mask, load_mask, mask_beside

Progress = Callable[[int, int], None]  # (done, total)
Stop = Callable[[], bool]


@dataclass
class Proposal:
    """What a pass would write: masks ("L" images) or crop boxes by file name, and the files it skipped."""

    masks: dict[str, Any] = field(default_factory=dict)
    crops: dict[str, Box] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why
    coverages: dict[str, float] = field(default_factory=dict)

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


def _run(names: list[str], one: Callable[[str], None], progress: Progress | None, stop: Stop | None) -> bool:
    """Call `one` per name with progress; False when stopped early."""
    for done, name in enumerate(names):
        if stop is not None and stop():
            return False
        one(name)
        if progress is not None:
            progress(done + 1, len(names))
    return True


def propose_masks(root: Path, names: Iterable[str], masker: Any, prompt: str, replace: bool = False,
                  progress: Progress | None = None, stop: Stop | None = None) -> Proposal | None:
    """A mask per image from `masker` (None when stopped). Without `replace`, images that already
    have a mask (alpha, NAME-mask.png) keep it and are listed as skipped."""
    from sdstudio.core.dataset import load_rgb

    out = Proposal()

    def one(name: str) -> None:
        path = root / name
        ref = find_mask(path, root)
        if ref is not None and (not replace or ref.origin == "alpha"):
            out.skipped[name] = "has an alpha mask" if ref.origin == "alpha" else "has a mask"
            return
        try:
            image = load_rgb(path)
        except (OSError, ValueError) as exc:
            out.skipped[name] = f"unreadable: {exc}"
            return
        mask = masker.mask(image, prompt)
        out.masks[name] = mask
        out.coverages[name] = coverage(mask)

    return out if _run(list(names), one, progress, stop) else None


def write_masks(root: Path, masks: dict[str, Any]) -> list[Path]:
    """Write each mask as NAME-mask.png beside its image (atomic); returns the files written."""
    from sdstudio.core.io import atomic

    written = []
    for name, mask in masks.items():
        target = mask_beside(root / name)
        atomic.save_image(mask.convert("L"), target)
        written.append(target)
    return written


def propose_crops(root: Path, names: Iterable[str], aspect_of: Callable[[str], float], padding: float = 0.1,
                  mask_dir: Path | None = None, keep: Iterable[str] = (), progress: Progress | None = None,
                  stop: Stop | None = None) -> Proposal | None:
    """"Crop to subject" for each image with a mask: `subject_crop.propose_crop` at the aspect
    `aspect_of(name)` gives (the image's bucket, or 1). Names in `keep` (boxes set by hand)
    are skipped. None when stopped."""
    from sdstudio.core.masks.subject_crop import propose_crop

    out = Proposal()
    kept = set(keep)

    def one(name: str) -> None:
        if name in kept:
            out.skipped[name] = "has a crop"
            return
        try:
            mask = load_mask(root / name, root, mask_dir)
        except (OSError, ValueError) as exc:
            out.skipped[name] = f"unreadable mask: {exc}"
            return
        if mask is None:
            out.skipped[name] = "no mask"
            return
        box = propose_crop(mask, aspect_of(name), padding)
        if box is None:
            out.skipped[name] = "empty mask"
            return
        out.crops[name] = box
        out.coverages[name] = coverage(mask)

    return out if _run(list(names), one, progress, stop) else None


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
