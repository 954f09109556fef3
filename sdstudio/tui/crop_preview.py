"""The Dataset screen's original picture with the crop the model gets outlined on it (Pillow only)."""

from __future__ import annotations

from typing import Any


def marked_original(image: Any, box: tuple[int, int, int, int], scale: float, size: int) -> Any:
    """A shrunk copy of `image` with the crop the model gets outlined."""
    from PIL import ImageDraw

    left, top, right, bottom = (v / scale for v in box)
    shown = image.copy()
    shown.thumbnail((size, size))
    ratio = shown.width / image.width
    draw = ImageDraw.Draw(shown)
    width = max(1, round(shown.width / 64))
    draw.rectangle([left * ratio, top * ratio, right * ratio - 1, bottom * ratio - 1], outline=(255, 48, 48), width=width)
    return shown
