""""Crop to subject": the mask's box plus padding, grown to the bucket's aspect, kept inside the image."""

from __future__ import annotations

from typing import Any

from sdstudio.core.masks.crops import Box


def subject_box(mask: Any, threshold: int = 128) -> Box | None:
    """The bounding box of the mask's subject pixels (>= threshold), or None when it has none."""
    import numpy as np

    arr = np.asarray(mask.convert("L")) >= threshold
    if not arr.any():
        return None
    ys, xs = np.nonzero(arr)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    return x0, y0, x1 - x0, y1 - y0


def fit_aspect(box: Box, aspect: float, image_size: tuple[int, int]) -> Box:
    """The smallest box of width/height `aspect` that holds `box`, centred on it, moved (then, if
    still too big, shrunk about its centre) to lie inside the image."""
    x, y, w, h = box
    iw, ih = image_size
    cx, cy = x + w / 2, y + h / 2
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    if w > iw:
        w, h = iw, iw / aspect
    if h > ih:
        h, w = ih, ih * aspect
    w, h = max(1, round(w)), max(1, round(h))
    left = min(max(round(cx - w / 2), 0), iw - w)
    top = min(max(round(cy - h / 2), 0), ih - h)
    return left, top, w, h


def propose_crop(mask: Any, aspect: float = 1.0, padding: float = 0.1) -> Box | None:
    """The crop "crop to subject" proposes: the subject's box, `padding` of its larger side added
    on every side, at width/height `aspect` (the bucket's, or 1 for square training); None when
    the mask is empty."""
    found = subject_box(mask)
    if found is None:
        return None
    x, y, w, h = found
    pad = padding * max(w, h)
    grown = (round(x - pad), round(y - pad), round(w + 2 * pad), round(h + 2 * pad))
    return fit_aspect(grown, aspect, mask.size)
