"""The demo DreamBooth subject on busy backgrounds, with exact masks, and a measure of how much of
such a background a model copies (benchmarks/masked_dreambooth.py; issue 24's comparison).

The demo world only has plain backgrounds (white, black, gray). Pasting the pink heart of
data/dreambooth/pink-heart onto stripes, noise and other shapes gives a set whose background a
plain DreamBooth LoRA learns along with the subject; the mask is known exactly, because the
heart is taken off its plain background by un-mixing each edge pixel against that known colour.

Background leakage of a generated picture: the spread of its background, the mean RGB distance of
the pixels outside the object (the judge's largest region far from the border's colour, grown by
two pixels to drop its blended edge) from their median colour. A plain demo background is flat
(spread of a few units from the decoder); the busy backgrounds here spread by 60 or more. A
sample "leaks" when its spread passes LEAK_SPREAD.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sdstudio.demo.shapes import ALL_COLOURS, OBJECT_COLOURS, SHAPES, draw_shape

SUBJECT_COLOUR = "pink"
LEAK_SPREAD = 20.0  # background spread (mean RGB distance from its median) above which a sample leaks
EDGE_GROW = 5  # max-filter size: the object region grown by 2 px before the background is measured


def busy_background(rng: random.Random, size: int) -> Any:
    """Stripes of two or three object colours, a few other shapes, and pixel noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    colours = rng.sample(sorted(OBJECT_COLOURS), 3)
    k = 4
    img = Image.new("RGB", (size * k, size * k), OBJECT_COLOURS[colours[0]])
    draw = ImageDraw.Draw(img)
    width = rng.randint(4, 10) * k
    vertical = rng.random() < 0.5
    for i, start in enumerate(range(0, size * k, width)):
        fill = OBJECT_COLOURS[colours[i % len(colours)]]
        box = (start, 0, start + width // 2, size * k) if vertical else (0, start, size * k, start + width // 2)
        draw.rectangle(box, fill=fill)
    for _ in range(rng.randint(2, 4)):
        colour = OBJECT_COLOURS[rng.choice(sorted(OBJECT_COLOURS))]
        draw_shape(draw, rng.choice(SHAPES), rng.uniform(0, size) * k, rng.uniform(0, size) * k,
                   rng.uniform(0.2, 0.4) * size * k, colour)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 18, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype("uint8"))


def subject_alpha(image: Any) -> Any:
    """The pink subject's coverage of each pixel (float array in [0, 1]) of a demo picture on a plain
    background: each pixel p = a * pink + (1 - a) * background, solved for a (least squares)."""
    import numpy as np

    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    background = np.median(border, axis=0)
    direction = np.asarray(ALL_COLOURS[SUBJECT_COLOUR], dtype=np.float32) - background
    alpha = ((arr - background) @ direction) / float(direction @ direction)
    return np.clip(alpha, 0.0, 1.0)


def composite(image: Any, rng: random.Random) -> tuple[Any, Any]:
    """(the subject of a demo picture pasted onto a busy background, its mask as a PIL "L" image)."""
    import numpy as np
    from PIL import Image

    alpha = subject_alpha(image)[..., None]
    busy = np.asarray(busy_background(rng, image.width), dtype=np.float32)
    pink = np.asarray(ALL_COLOURS[SUBJECT_COLOUR], dtype=np.float32)
    out = alpha * pink + (1.0 - alpha) * busy
    mask = Image.fromarray(np.round(alpha[..., 0] * 255).astype("uint8"), mode="L")
    return Image.fromarray(np.round(out).astype("uint8")), mask


def write_busy_set(source: Path, out: Path, seed: int = 0) -> int:
    """The demo DreamBooth set of `source` on busy backgrounds, each with NAME-mask.png, into `out`."""
    from PIL import Image

    from sdstudio.core.io import atomic
    from sdstudio.core.masks.source import mask_beside

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.glob("*.png") if not p.stem.endswith("-mask"))
    for path in files:
        with Image.open(path) as im:
            picture, mask = composite(im.convert("RGB"), rng)
        atomic.save_image(picture, out / path.name)
        atomic.save_image(mask, mask_beside(out / path.name))
    return len(files)


def background_spread(image: Any) -> float:
    """Mean RGB distance of the background's pixels from their median colour (see the module's doc)."""
    import numpy as np
    from PIL import Image, ImageFilter

    from sdstudio.demo.judge import OBJECT_DISTANCE, _largest_region

    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([arr[:2].reshape(-1, 3), arr[-2:].reshape(-1, 3), arr[:, :2].reshape(-1, 3),
                             arr[:, -2:].reshape(-1, 3)])
    far = np.sqrt(((arr - np.median(border, axis=0)) ** 2).sum(-1)) > OBJECT_DISTANCE
    obj = _largest_region(far) if far.any() else far
    grown = np.asarray(Image.fromarray(obj.astype("uint8") * 255).filter(ImageFilter.MaxFilter(EDGE_GROW))) > 0
    pixels = arr[~grown]
    if len(pixels) == 0:
        return 0.0
    return float(np.sqrt(((pixels - np.median(pixels, axis=0)) ** 2).sum(-1)).mean())


def leaks(image: Any) -> bool:
    """True when the picture's background is busy rather than a plain demo background."""
    return background_spread(image) > LEAK_SPREAD
