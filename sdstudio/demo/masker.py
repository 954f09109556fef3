"""The demo world's masker: exact for its flat shapes, on plain or busy backgrounds.

The prompt names the subject's colour and, usually, its shape ("the pink heart"). Pixels near
that colour form the subject's rough extent (their largest connected region, holes filled). Each
pixel around it gets an estimated coverage: unmixed against the background colour beside it where
the background is flat (exact at an anti-aliased edge), or "closer to the subject's colour than
half the background's median distance" on noise. When the prompt names a shape, that shape is
fitted to the estimates (centre and size: moments, then descent on the absolute error) and drawn
the way `sdstudio.demo.shapes` draws it, so clutter touching the edge does not bend the mask;
without a shape the estimates are the mask. Figures: benchmarks/demo_masker.py. Tests rely on it
where a real segmentation model would need weights this machine does not have.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.masks.shaping import grow
from sdstudio.demo.busy import scene_alpha
from sdstudio.demo.judge import _largest_region, parse_caption
from sdstudio.demo.shapes import ALL_COLOURS, Scene, outline

CORE_DISTANCE = 60.0  # RGB distance from the named colour of the subject's inner pixels (a flat colour)
FLAT_SPREAD = 150.0  # summed RGB variance of a 3x3 window below which a background is flat
SAME_COLOUR = 30.0  # a background this close to the subject's colour cannot be unmixed from it
STEPS = (0.5, 0.25, 0.125, 0.0625)  # descent steps in pixels
WINDOW_MARGIN = 4  # pixels drawn around the evidence while fitting
# (centre x, centre y, size) moves: each alone, and growing or shrinking from one side or corner
# (an absolute error has ridges along which one coordinate alone cannot descend)
SIDES = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))
MOVES = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)] + [
    (hx * 0.5, hy * 0.5, ds) for ds in (1, -1) for hx, hy in SIDES]


def _fill_holes(mask: Any) -> Any:
    """Fill what the background cannot reach from the border (a subject has no holes in this world)."""
    import numpy as np

    outside = _largest_region(np.pad(~mask, 1))[1:-1, 1:-1]
    return ~outside


@lru_cache(maxsize=None)
def _unit_moments(shape: str) -> tuple[float, float, float]:
    """The shape's area and centroid offset for size 1 (measured on a large drawing)."""
    import numpy as np

    big, size = 512, 400.0
    alpha = np.asarray(scene_alpha(Scene("red", shape, "white", size, big / 2, big / 2), big), dtype=np.float64) / 255
    ys, xs = np.mgrid[0:big, 0:big] + 0.5
    area = alpha.sum()
    return area / size**2, ((alpha * xs).sum() / area - big / 2) / size, ((alpha * ys).sum() / area - big / 2) / size


def _fit(shape: str, colour: str, share: Any, resolution: tuple[int, int]) -> Any:
    """The shape's coverage ("L") whose centre and size best match the estimated coverage `share`
    (least absolute error: robust to the noisy guesses on a noisy background), starting from the
    size and centre the moments of `share` give."""
    import numpy as np
    from PIL import Image

    area, ox, oy = _unit_moments(shape)
    ys, xs = np.mgrid[0:share.shape[0], 0:share.shape[1]] + 0.5
    mass = float(share.sum())
    size = (mass / area) ** 0.5
    cx, cy = float((share * xs).sum()) / mass - ox * size, float((share * ys).sum()) / mass - oy * size
    # only a window around the evidence is drawn and compared (the shape never fits beyond it)
    ys_in, xs_in = np.nonzero(share > 0)
    x0, y0 = max(0, int(xs_in.min()) - WINDOW_MARGIN), max(0, int(ys_in.min()) - WINDOW_MARGIN)
    x1 = min(resolution[0], int(xs_in.max()) + 1 + WINDOW_MARGIN)
    y1 = min(resolution[1], int(ys_in.max()) + 1 + WINDOW_MARGIN)
    w, h = x1 - x0, y1 - y0
    side = max(w, h)
    seen = share[y0:y1, x0:x1]

    def alpha(p: tuple[float, float, float]) -> Any:
        a = scene_alpha(Scene(colour, shape, "white", p[2], p[0] - x0, p[1] - y0), side)
        return a.crop((0, 0, w, h)) if (w, h) != (side, side) else a

    def score(p: tuple[float, float, float]) -> float:
        return -float(np.abs(np.asarray(alpha(p), dtype=np.float32) / 255.0 - seen).sum())

    best = (float(cx), float(cy), float(size))
    best_score = score(best)
    for step in STEPS:
        improved = True
        while improved:
            improved = False
            for dx, dy, ds in MOVES:
                cand = (best[0] + dx * step, best[1] + dy * step, best[2] + ds * step)
                if cand[2] <= 1:
                    continue
                s = score(cand)
                if s > best_score:
                    best, best_score, improved = cand, s, True
    out = Image.new("L", resolution, 0)
    out.paste(alpha(best), (x0, y0))
    return out


def _box3(a: Any) -> Any:
    """The mean of each pixel's 3x3 neighbourhood (edges repeated)."""
    import numpy as np

    h, w = a.shape
    p = np.pad(a, 1, mode="edge")
    return sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0


def _colour_behind(rgb: Any, known: Any, steps: int) -> tuple[Any, Any]:
    """For each pixel within `steps` of a `known` one, the colour of a nearest known pixel (filled in
    layer by layer from the known pixels, side neighbours before diagonal ones); and where one was found."""
    import numpy as np

    back, known = rgb.copy(), known.copy()
    near, far = (slice(None, -2), slice(2, None)), slice(1, -1)
    shifts = [(near[0], far), (near[1], far), (far, near[0]), (far, near[1])] + [(a, b) for a in near for b in near]
    for _ in range(steps):
        pk, pb = np.pad(known, 1), np.pad(back, ((1, 1), (1, 1), (0, 0)))
        reached = known.copy()
        for sy, sx in shifts:
            take = ~reached & pk[sy, sx]
            back[take] = pb[sy, sx][take]
            reached |= take
        known = reached
    return back, known


def _coverage_evidence(rgb: Any, colour: Any, region: Any, ring: int = 2) -> Any:
    """Each pixel's estimated share of the subject colour (0-1). Where the background is locally
    flat (a plain colour, inside a stripe or check) the pixel is unmixed against a nearest pixel
    outside the region grown by `ring` px, taken as the colour behind it: exact at anti-aliased
    edges. Where it is not (noise), a pixel counts as subject when it is closer to the subject's
    colour than half the background's median distance from it (the edge's half-coverage point)."""
    import numpy as np

    grown = grow(region, ring)
    if grown.all():
        return region.astype(np.float32)
    back, found = _colour_behind(rgb, ~grown, ring + 3)
    towards = colour - back
    norm = (towards ** 2).sum(axis=2)
    share = ((rgb - back) * towards).sum(axis=2) / np.maximum(norm, 1.0)
    share = np.where((norm < SAME_COLOUR ** 2) | ~found, region, share)  # no colour to unmix from: the region
    spread = sum(_box3(rgb[..., c] ** 2) - _box3(rgb[..., c]) ** 2 for c in range(3))
    flat = _colour_behind(spread[..., None], ~grown, ring + 3)[0][..., 0] <= FLAT_SPREAD
    dist = np.sqrt(((rgb - colour) ** 2).sum(axis=2))
    outside = dist[~grown]
    half = np.median(outside) / 2 if outside.size else CORE_DISTANCE
    share = np.where(flat | ~found, share, (dist < half).astype(np.float32))
    return np.where(grown, np.clip(share, 0.0, 1.0), 0.0).astype(np.float32)  # nothing of the subject beyond the ring


class DemoMasker:
    name = "demo"

    def mask(self, image: Any, prompt: str) -> Any:
        import numpy as np
        from PIL import Image

        colour, shape, _ = parse_caption(prompt)
        if colour is None:
            raise SdstudioError(f"the demo masker needs a colour in the prompt ({', '.join(ALL_COLOURS)}), "
                                f"e.g. 'the pink heart'; got {prompt!r}")
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        target = np.asarray(ALL_COLOURS[colour], dtype=np.float32)
        near = np.sqrt(((rgb - target) ** 2).sum(axis=2)) < CORE_DISTANCE
        region = _largest_region(near) if near.any() else near
        if not region.any():
            return Image.new("L", image.size, 0)
        region = _fill_holes(region)
        share = _coverage_evidence(rgb, target, region)
        if shape is None:
            return Image.fromarray(np.where(share >= 0.5, 255, 0).astype("uint8"), mode="L")
        coverage = _fit(shape, colour, share, image.size)
        return coverage.point(lambda v: 255 if v >= 128 else 0)
