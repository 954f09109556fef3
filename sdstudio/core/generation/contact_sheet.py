"""A labelled grid PNG (rows x columns of images), drawn with PIL only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MIN_CELL = 128  # small images (the demo model's) are enlarged so the labels stay readable
PAD = 6


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """Shorten `text` with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _label_lines(draw: Any, text: str, font: Any, width: int) -> list[str]:
    """A column label on one line if it fits, else one line per " · " part (the first part
    says what tells the columns apart: "step 400 checkpoint"), each cut to fit."""
    if draw.textlength(text, font=font) <= width or " · " not in text:
        return [_fit(draw, text, font, width)]
    return [_fit(draw, part, font, width) for part in text.split(" · ")]


def make_grid(rows: Sequence[Sequence[Any]], row_labels: Sequence[str], col_labels: Sequence[str],
              title: str | None = None) -> Any:
    """Images `rows[r][c]` in a grid with column labels on top, row labels on the left, and an
    optional title line; every cell is shown at the size of the largest image (at least MIN_CELL)."""
    from PIL import Image, ImageDraw

    if not rows or not rows[0]:
        raise ValueError("make_grid needs at least one image")
    if len(row_labels) != len(rows) or any(len(r) != len(col_labels) for r in rows):
        raise ValueError("make_grid: labels do not match the rows and columns of images")
    w = max(im.width for r in rows for im in r)
    h = max(im.height for r in rows for im in r)
    scale = max(1, -(-MIN_CELL // min(w, h)))
    cw, ch = w * scale, h * scale
    font = _font(max(12, min(cw // 12, 20)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = int(probe.textbbox((0, 0), "Ag", font=font)[3]) + PAD
    left = min(max(int(probe.textlength(t, font=font)) for t in row_labels) + 2 * PAD, cw)
    heads = [_label_lines(probe, label, font, cw) for label in col_labels]
    top = line * max(len(h) for h in heads) + PAD + (line if title else 0)
    sheet = Image.new("RGB", (left + len(col_labels) * (cw + PAD), top + len(rows) * (ch + PAD)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((PAD, PAD // 2), _fit(draw, title, font, sheet.width - 2 * PAD), fill="black", font=font)
    for c, lines in enumerate(heads):
        x = left + c * (cw + PAD)
        for i, text in enumerate(lines):
            draw.text((x, top - line * (len(lines) - i)), text, fill="black", font=font)
    for r, (label, images) in enumerate(zip(row_labels, rows)):
        y = top + r * (ch + PAD)
        draw.text((PAD, y + ch // 2 - line // 2), _fit(draw, label, font, left - PAD), fill="black", font=font)
        for c, im in enumerate(images):
            cell = im.convert("RGB").resize((cw, ch), Image.Resampling.NEAREST) if im.size != (cw, ch) else im
            sheet.paste(cell, (left + c * (cw + PAD), y))
    return sheet
