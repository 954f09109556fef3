"""Demo-world pictures on busy backgrounds (noise, stripes, checks), with the shape's exact mask.

A plain background makes masking trivial; these are the hard case for the demo masker and the
case masked training exists for (a subject the model should learn, a background it should not).
`scene_mask` is the ground truth: the shape drawn by `sdstudio.demo.shapes` alone, at the same
supersampling, so a mask can be compared with the scene it came from.
"""

from __future__ import annotations

import random
from typing import Any

from sdstudio.demo.shapes import ALL_COLOURS, SUPERSAMPLE, Scene, draw_shape

KINDS = ("noise", "stripes", "checks")
AVOID_DISTANCE = 150.0


def scene_alpha(scene: Scene, resolution: int = 64) -> Any:
    """The shape's coverage of each pixel ("L", 0-255), drawn and shrunk as `shapes.render` draws it."""
    from PIL import Image, ImageDraw

    k = SUPERSAMPLE
    img = Image.new("L", (resolution * k, resolution * k), 0)
    draw_shape(ImageDraw.Draw(img), scene.shape, scene.cx * k, scene.cy * k, scene.size * k, 255)
    return img.resize((resolution, resolution), Image.Resampling.LANCZOS)


def scene_mask(scene: Scene, resolution: int = 64) -> Any:
    """The ground-truth subject mask (bool array): pixels the shape covers at least half of."""
    import numpy as np

    return np.asarray(scene_alpha(scene, resolution)) >= 128


def busy_background(rng: random.Random, resolution: int = 64, kind: str = "noise", avoid: str | None = None) -> Any:
    """A cluttered RGB background: coloured noise, or stripes / checks of random colours, none of
    them within AVOID_DISTANCE of colour `avoid` (the subject's: a stripe of the subject's own
    colour would be part of "the pink heart" to any masker)."""
    import numpy as np
    from PIL import Image

    if kind not in KINDS:
        raise ValueError(f"unknown background {kind!r}; known: {', '.join(KINDS)}")
    gen = np.random.default_rng(rng.randrange(2**32))
    if kind == "noise":
        arr = gen.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)
    else:
        period = rng.randint(4, max(5, resolution // 6))
        colours = gen.integers(0, 256, (64, 3), dtype=np.uint8)
        if avoid is not None:
            far = np.sqrt(((colours.astype(np.float32) - ALL_COLOURS[avoid]) ** 2).sum(axis=1)) >= AVOID_DISTANCE
            colours = colours[far]
        colours = colours[:4]
        y, x = np.mgrid[0:resolution, 0:resolution]
        index = (x // period) % 4 if kind == "stripes" else ((x // period) + (y // period)) % 4
        arr = colours[index]
    return Image.fromarray(arr, mode="RGB")


def render_on(scene: Scene, background: Any, resolution: int = 64) -> Any:
    """The scene's shape composited onto `background` (resized to the picture) with its anti-aliased edge."""
    from PIL import Image

    back = background.convert("RGB").resize((resolution, resolution))
    front = Image.new("RGB", back.size, ALL_COLOURS[scene.colour])
    return Image.composite(front, back, scene_alpha(scene, resolution))
