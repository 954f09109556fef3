"""The Dataset screen's picture of what the model sees: the trainer's own geometry (view.py)."""

from __future__ import annotations

from typing import Any

from sdstudio.core.training import buckets as bk
from sdstudio.core.masks.crops import Box, clip_box
from sdstudio.core.training.view import View, plan, region_size


def preview(image: Any, resolution: int, bucketed: bool = False, center: bool = True, rng: Any = None,
            box: Box | None = None) -> tuple[View, Any]:
    """(the view, the picture the model sees): the default buckets (64 px steps) when `bucketed`,
    the subject crop `box` (file pixels, e.g. from masks.crops.read_crops) when the image has one.
    `view.outline()` is the rectangle to draw on the original."""
    box = clip_box(box, image.size) if box is not None else None
    placement = bk.place(*region_size(image.size, box), bk.bucket_sizes(resolution)) if bucketed else None
    view = plan(image.size, resolution, placement, box, center, False, rng)
    return view, view.render(image)
