"""Judge a picture of the demo world: the object's colour and shape, the background colour.

Used by the tests and benchmarks to tell whether the demo model draws what a caption asks
for, and whether a LoRA taught it the DreamBooth subject. Numpy + PIL only.

How: the background is the median of the border pixels; the object is the largest connected
region of pixels far from it. Its colour is the nearest palette colour to the region's median;
its shape is the template (each shape drawn by `sdstudio.demo.shapes`, scaled to the region's
bounding box) that overlaps the region best.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sdstudio.demo.shapes import ALL_COLOURS, ALL_SHAPES, BACKGROUNDS

GRID = 32  # templates and object masks are compared on a GRID x GRID raster
MIN_OBJECT_FRACTION = 0.01  # a smaller region is "no object"
MIN_SHAPE_IOU = 0.6  # best template overlap below this reads as "unknown"
# Round shapes are convex: a region that fills clearly less of its convex hull (a star whose arms
# a blurry decoder has softened, so its bounding box looks round) is not read as one.
CONVEX_SHAPES = ("circle", "square")
MIN_CONVEX_SOLIDITY = 0.9
OBJECT_DISTANCE = 70.0  # RGB distance from the background that makes a pixel part of the object
MAX_OBJECT_FRACTION = 0.7  # objects of the demo world never fill the picture
MAX_COLOUR_SPREAD = 60.0  # mean RGB distance from the object's median colour: above it, not one flat shape


@dataclass(frozen=True)
class Reading:
    """What the judge sees in one picture."""

    colour: str  # a palette colour name, or "none"
    shape: str  # a shape name, "unknown" or "none"
    background: str
    shape_score: float  # IoU of the best shape template (0..1)
    object_fraction: float  # share of the picture the object covers

    def matches(self, colour: str | None = None, shape: str | None = None, background: str | None = None) -> bool:
        return ((colour is None or self.colour == colour) and (shape is None or self.shape == shape)
                and (background is None or self.background == background))


def parse_caption(text: str) -> tuple[str | None, str | None, str | None]:
    """(colour, shape, background) named in a caption like "a red circle on a blue background"."""
    words = text.lower().replace(",", " ").split()
    head, _, tail = " ".join(words).partition(" on ")
    colour = next((w for w in head.split() if w in ALL_COLOURS), None)
    shape = next((w for w in head.split() if w in ALL_SHAPES), None)
    background = next((w for w in tail.split() if w in ALL_COLOURS or w in BACKGROUNDS), None)
    return colour, shape, background


def _nearest(rgb: Any, palette: dict[str, tuple[int, int, int]]) -> str:
    import numpy as np

    names = list(palette)
    dist = [float(np.sum((np.asarray(palette[n], dtype=np.float32) - rgb) ** 2)) for n in names]
    return names[int(np.argmin(dist))]


def _largest_region(mask: Any) -> Any:
    """The largest 4-connected region of a boolean mask (breadth-first labelling)."""
    import numpy as np

    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        region = [(int(y0), int(x0))]
        seen[y0, x0] = True
        queue = deque(region)
        while queue:
            y, x = queue.popleft()
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    region.append((ny, nx))
                    queue.append((ny, nx))
        if len(region) > len(best):
            best = region
    out = np.zeros_like(mask, dtype=bool)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def _erode(mask: Any) -> Any:
    """Pixels of `mask` whose four neighbours are in it too."""
    import numpy as np

    m = np.pad(mask, 1)
    return mask & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]


def _cross(o: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> int:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def solidity(mask: Any) -> float:
    """Region area / area of its convex hull (pixels as unit squares; monotone-chain hull)."""
    import numpy as np

    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0.0
    corners = sorted({(int(x) + dx, int(y) + dy) for y, x in zip(ys, xs) for dx in (0, 1) for dy in (0, 1)})
    lower: list[tuple[int, int]] = []
    upper: list[tuple[int, int]] = []
    for pt in corners:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], pt) <= 0:
            lower.pop()
        lower.append(pt)
    for pt in reversed(corners):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], pt) <= 0:
            upper.pop()
        upper.append(pt)
    hull = lower[:-1] + upper[:-1]
    area = 0.5 * abs(sum(hull[i][0] * hull[i - 1][1] - hull[i - 1][0] * hull[i][1] for i in range(len(hull))))
    return float(len(xs)) / area if area else 0.0


def _fit_to_grid(mask: Any) -> Any:
    """Crop a mask to its bounding box and scale it to GRID x GRID (as floats 0..1)."""
    import numpy as np
    from PIL import Image

    ys, xs = np.nonzero(mask)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.uint8) * 255
    img = Image.fromarray(crop).resize((GRID, GRID), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


@lru_cache(maxsize=1)
def _templates() -> dict[str, Any]:
    import numpy as np
    from PIL import Image, ImageDraw

    from sdstudio.demo.shapes import draw_shape

    big = GRID * 8
    out = {}
    for shape in ALL_SHAPES:
        img = Image.new("L", (big, big), 0)
        draw_shape(ImageDraw.Draw(img), shape, big / 2, big / 2, big * 0.8, 255)
        out[shape] = _fit_to_grid(np.asarray(img) > 127)
    return out


def read_image(image: Any) -> Reading:
    """Read one PIL image (any size; RGB)."""
    import numpy as np

    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w, _ = arr.shape
    border = np.concatenate([arr[:2].reshape(-1, 3), arr[-2:].reshape(-1, 3), arr[:, :2].reshape(-1, 3),
                             arr[:, -2:].reshape(-1, 3)])
    bg_rgb = np.median(border, axis=0)
    background = _nearest(bg_rgb, {**BACKGROUNDS, **ALL_COLOURS})
    far = np.sqrt(((arr - bg_rgb) ** 2).sum(-1)) > OBJECT_DISTANCE
    region = _largest_region(far)
    fraction = float(region.sum()) / (h * w)
    if fraction < MIN_OBJECT_FRACTION:
        return Reading("none", "none", background, 0.0, fraction)
    core = _erode(region)  # edge pixels blend into the background: judge the colour inside
    pixels = arr[core if core.sum() >= 4 else region]
    median = np.median(pixels, axis=0)
    spread = float(np.sqrt(((pixels - median) ** 2).sum(-1)).mean())
    if fraction > MAX_OBJECT_FRACTION or spread > MAX_COLOUR_SPREAD:
        return Reading("none", "unknown", background, 0.0, fraction)
    colour = _nearest(median, ALL_COLOURS)
    fitted = _fit_to_grid(region)
    scores = {}
    for shape, tmpl in _templates().items():
        inter = np.minimum(fitted, tmpl).sum()
        union = np.maximum(fitted, tmpl).sum()
        scores[shape] = float(inter / union) if union else 0.0
    if solidity(region) < MIN_CONVEX_SOLIDITY:
        for name in CONVEX_SHAPES:
            scores.pop(name, None)
    shape = max(scores, key=scores.__getitem__)
    best = scores[shape]
    if best < MIN_SHAPE_IOU:
        shape = "unknown"
    return Reading(colour, shape, background, best, fraction)


def check_caption(image: Any, caption: str) -> dict[str, bool]:
    """Whether the image shows the caption's colour, shape and background (each a bool)."""
    colour, shape, background = parse_caption(caption)
    r = read_image(image)
    return {"colour": r.colour == colour, "shape": r.shape == shape,
            "background": background is None or r.background == background}


def accuracy(images: list[Any], captions: list[str]) -> dict[str, float]:
    """Share of images whose colour / shape / background / all three match their captions."""
    totals = {"colour": 0, "shape": 0, "background": 0, "all": 0}
    for image, caption in zip(images, captions, strict=True):
        result = check_caption(image, caption)
        for key, ok in result.items():
            totals[key] += ok
        totals["all"] += all(result.values())
    n = max(1, len(images))
    return {k: v / n for k, v in totals.items()}
