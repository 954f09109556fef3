"""The little world of the demo model: colours, shapes and how they are drawn.

The sample datasets, the demo model's trainer and the checker all draw from these
definitions, so a caption, an image and a judgement of that image agree on what
"a red star" is.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

# Object colours of the text-to-image set; "pink" is kept for the DreamBooth subject.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (35, 70, 230),
    "yellow": (245, 215, 20),
    "purple": (140, 40, 190),
    "orange": (250, 130, 10),
}
SUBJECT_COLOURS: dict[str, tuple[int, int, int]] = {"pink": (255, 110, 200)}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
}
SHAPES = ("circle", "square", "triangle", "star")
SUBJECT_SHAPES = ("heart",)
ALL_COLOURS = {**OBJECT_COLOURS, **SUBJECT_COLOURS}
ALL_SHAPES = SHAPES + SUBJECT_SHAPES

SUPERSAMPLE = 4  # draw large, then shrink: smooth edges like a real photo of a flat shape


@dataclass(frozen=True)
class Scene:
    """One picture: a single flat shape on a plain background."""

    colour: str
    shape: str
    background: str
    size: float  # the shape's bounding-box side, in pixels of the final image
    cx: float
    cy: float

    @property
    def caption(self) -> str:
        return caption_for(self.colour, self.shape, self.background)


def caption_for(colour: str, shape: str, background: str) -> str:
    return f"a {colour} {shape} on a {background} background"


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.45
        ang = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def _heart(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    # The classic parametric heart, scaled so that its wider side spans 2r.
    raw = []
    for i in range(96):
        t = 2 * math.pi * i / 96
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        raw.append((x, y))
    xs, ys = [p[0] for p in raw], [p[1] for p in raw]
    mx, my = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    scale = 2 * r / max(max(xs) - min(xs), max(ys) - min(ys))
    return [(cx + (x - mx) * scale, cy + (y - my) * scale) for x, y in raw]


def outline(shape: str, cx: float, cy: float, size: float) -> list[tuple[float, float]] | None:
    """Polygon of a shape inside a size x size box centred on (cx, cy); None for a circle."""
    r = size / 2
    if shape == "circle":
        return None
    if shape == "square":
        h = r * 0.9
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    if shape == "star":
        return _star(cx, cy + r * 0.1, r)
    if shape == "heart":
        return _heart(cx, cy, r)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(ALL_SHAPES)}")


def draw_shape(draw: Any, shape: str, cx: float, cy: float, size: float, fill: Any) -> None:
    """Draw a shape with PIL's ImageDraw (any mode, any fill)."""
    poly = outline(shape, cx, cy, size)
    if poly is None:
        r = size / 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(poly, fill=fill)


def render(scene: Scene, resolution: int = 64, rgb: tuple[int, int, int] | None = None) -> Any:
    """A PIL RGB image of the scene (anti-aliased by supersampling)."""
    from PIL import Image, ImageDraw

    k = SUPERSAMPLE
    img = Image.new("RGB", (resolution * k, resolution * k), BACKGROUNDS.get(scene.background, (128, 128, 128)))
    colour = rgb or ALL_COLOURS[scene.colour]
    draw_shape(ImageDraw.Draw(img), scene.shape, scene.cx * k, scene.cy * k, scene.size * k, colour)
    return img.resize((resolution, resolution), Image.Resampling.LANCZOS)


def random_scene(rng: random.Random, colour: str, shape: str, background: str, resolution: int = 64,
                 min_frac: float = 0.34, max_frac: float = 0.7) -> Scene:
    """Place a shape at a random size and position, wholly inside the picture with a margin."""
    size = rng.uniform(min_frac, max_frac) * resolution
    margin = resolution * 0.06 + size / 2
    cx = rng.uniform(margin, resolution - margin)
    cy = rng.uniform(margin, resolution - margin)
    return Scene(colour, shape, background, round(size, 2), round(cx, 2), round(cy, 2))
