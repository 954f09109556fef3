"""Editing one crop box by keyboard steps: move, grow or shrink at a locked aspect, stay inside.

The Dataset screen's crop editor calls these; they hold the geometry so the screen only maps
keys to steps. Boxes are `[x, y, w, h]` in the image's own pixels (see crops.py). A box is
never larger than the image and never leaves it: a step that would push it out stops at the edge.
"""

from __future__ import annotations

from sdstudio.core.masks.crops import Box
from sdstudio.core.masks.subject_crop import fit_aspect

STEP_SHARE = 0.02  # one key press moves or resizes by 2 % of the image's longer side


def step_px(image_size: tuple[int, int], share: float = STEP_SHARE) -> int:
    """Pixels per key press: `share` of the longer side, at least one pixel."""
    return max(1, round(max(image_size) * share))


def bucket_aspect(width: int, height: int, resolution: int, bucketed: bool) -> float:
    """The width/height a crop must have: the image's bucket's with buckets, else 1 (square)."""
    if not bucketed:
        return 1.0
    from sdstudio.core.training import buckets as bk

    w, h = bk.place(width, height, bk.bucket_sizes(resolution)).bucket
    return w / h


def default_box(image_size: tuple[int, int], aspect: float) -> Box:
    """The largest centred box of `aspect`: what a centre crop takes without a stored box."""
    return fit_aspect((0, 0, image_size[0], image_size[1]), aspect, image_size)


def _inside(x: float, y: float, w: int, h: int, image_size: tuple[int, int]) -> Box:
    iw, ih = image_size
    return (int(min(max(round(x), 0), iw - w)), int(min(max(round(y), 0), ih - h)), w, h)


def move_box(box: Box, dx: int, dy: int, image_size: tuple[int, int]) -> Box:
    """`box` shifted by (dx, dy), stopped at the image's edges."""
    x, y, w, h = box
    return _inside(x + dx, y + dy, w, h, image_size)


def _size_at(aspect: float, long_side: float) -> tuple[int, int]:
    """(w, h) of `aspect` whose longer side is `long_side`."""
    if aspect >= 1:
        return max(1, round(long_side)), max(1, round(long_side / aspect))
    return max(1, round(long_side * aspect)), max(1, round(long_side))


def resize_box(box: Box, delta: int, aspect: float, image_size: tuple[int, int], min_side: int = 8) -> Box:
    """`box` grown (delta > 0) or shrunk by `delta` pixels on its longer side, about its centre,
    at `aspect`; no larger than the image allows at that aspect, no shorter side below `min_side`
    (or the image's, if smaller); moved back inside when growing reaches an edge."""
    x, y, w, h = box
    iw, ih = image_size
    largest = default_box(image_size, aspect)
    longest_fit = max(largest[2], largest[3])
    shortest_ok = min(min_side, iw, ih)
    smallest_long = shortest_ok * max(aspect, 1 / aspect)
    long_side = min(max(max(w, h) + delta, smallest_long), longest_fit)
    nw, nh = _size_at(aspect, long_side)
    nw, nh = min(nw, iw), min(nh, ih)
    cx, cy = x + w / 2, y + h / 2
    return _inside(cx - nw / 2, cy - nh / 2, nw, nh, image_size)


def describe(box: Box | None) -> str:
    """The box as the list and the info line show it."""
    if box is None:
        return "no crop"
    x, y, w, h = box
    return f"crop {w}x{h} at {x},{y}"
