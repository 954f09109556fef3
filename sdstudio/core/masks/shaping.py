"""Shaping a model's mask (threshold, expand, blur) and growing a mask by whole pixels.

Growing is written here with numpy (no scipy in sdstudio's dependencies): alternating 4- and
8-neighbour steps grow a region by an octagon, about 6 % further along the diagonals than
along the axes: close enough to a disc for an "expand by px" option or a ring around a subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdstudio.core.errors import SdstudioError


def grow(mask: Any, px: int) -> Any:
    """The boolean array `mask` grown by `px` pixels in every direction."""
    import numpy as np

    out = np.asarray(mask, dtype=bool)
    for i in range(px):
        p = np.pad(out, 1)
        step = out | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
        if i % 2:
            step |= p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:]
        out = step
    return out


@dataclass(frozen=True)
class Shaping:
    """What is done to a model's mask: threshold (0-1 of white; 0 keeps it soft), then expand
    (grow the subject by px), then blur (Gaussian radius px, a soft edge)."""

    threshold: float = 0.5
    expand: int = 0
    blur: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise SdstudioError(f"--threshold {self.threshold}: between 0 (keep the soft mask) and 1 (exclusive)")
        if self.expand < 0 or self.blur < 0:
            raise SdstudioError("--expand and --blur are pixel counts: 0 or more")

    def apply(self, mask: Any) -> Any:
        """The shaped "L" mask."""
        import numpy as np
        from PIL import Image, ImageFilter

        arr = np.asarray(mask.convert("L"))
        if self.threshold > 0:
            arr = np.where(arr >= self.threshold * 255, 255, 0).astype(np.uint8)
        if self.expand:
            arr = np.where(grow(arr >= 128, self.expand), 255, arr).astype(np.uint8)
        out = Image.fromarray(arr, mode="L")
        return out.filter(ImageFilter.GaussianBlur(self.blur)) if self.blur else out
