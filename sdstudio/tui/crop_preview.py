"""The Dataset screen's original picture with the crop the model gets outlined on it, and the
subject mask tinted over it when the overlay is on (Pillow only)."""

from __future__ import annotations

from typing import Any

BACKGROUND_TINT = (10, 20, 80)  # the background is dimmed toward dark blue; the subject keeps its colours
TINT = 0.7


def mask_overlay(image: Any, mask: Any) -> Any:
    """`image` with its background (where `mask` is black) dimmed, at the image's size: what
    masked training learns from stays bright."""
    from PIL import Image

    rgb = image.convert("RGB")
    subject = mask.convert("L").resize(rgb.size, Image.Resampling.BILINEAR)
    dark = Image.blend(rgb, Image.new("RGB", rgb.size, BACKGROUND_TINT), TINT)
    return Image.composite(rgb, dark, subject)


def marked_original(image: Any, box: tuple[float, float, float, float], scale: float, size: int, mask: Any = None) -> Any:
    """A shrunk copy of `image` with the crop the model gets outlined (`box` in the image resized
    by `scale`), the mask tinted over it when one is given."""
    from PIL import ImageDraw

    left, top, right, bottom = (v / scale for v in box)
    shown = image.copy()
    shown.thumbnail((size, size))
    if mask is not None:
        shown = mask_overlay(shown, mask)
    ratio = shown.width / image.width
    draw = ImageDraw.Draw(shown)
    width = max(1, round(shown.width / 32))  # still a visible line when a terminal shows it in 24 cells
    draw.rectangle([left * ratio, top * ratio, right * ratio - 1, bottom * ratio - 1], outline=(255, 48, 48), width=width)
    return shown


def preview_pair(image: Any, resolution: int, center: bool, seed: int, bucketed: bool, size: int,
                 box: tuple[int, int, int, int] | None = None, mask: Any = None) -> tuple[Any, Any]:
    """(the original with what the model gets outlined, what the model sees), both at most `size` px.

    The geometry is the trainer's own (core/training/preview.py: the subject crop box, the bucket
    or square, the centre or seeded random crop), so the preview is what training uses.
    """
    import random

    from sdstudio.core.training.preview import preview

    view, seen = preview(image, resolution, bucketed, center, random.Random(seed), box)
    original = marked_original(image, view.outline(), 1.0, size, mask)
    seen.thumbnail((size, size))
    return original, seen
