"""The demo world's masker: exact for its flat shapes, on plain or busy backgrounds.

The prompt names the subject's colour ("the pink heart"); the subject is the largest connected
region of pixels near that colour, its holes filled. On the demo world's pictures (one flat
shape, drawn with anti-aliased edges) that is the shape itself, so tests can rely on it where a
real segmentation model would need weights this machine does not have.
"""

from __future__ import annotations

from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.demo.judge import _largest_region, parse_caption
from sdstudio.demo.shapes import ALL_COLOURS

COLOUR_DISTANCE = 90.0  # RGB distance from the named colour still counted as the subject (edges blend)


def _fill_holes(mask: Any) -> Any:
    """Fill what the background cannot reach from the border (a subject has no holes in this world)."""
    import numpy as np

    outside = _largest_region(np.pad(~mask, 1))[1:-1, 1:-1]
    return ~outside


class DemoMasker:
    name = "demo"

    def mask(self, image: Any, prompt: str) -> Any:
        import numpy as np
        from PIL import Image

        colour, _, _ = parse_caption(prompt)
        if colour is None:
            raise SdstudioError(f"the demo masker needs a colour in the prompt ({', '.join(ALL_COLOURS)}), "
                                f"e.g. 'the pink heart'; got {prompt!r}")
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        near = np.sqrt(((rgb - np.asarray(ALL_COLOURS[colour], dtype=np.float32)) ** 2).sum(axis=2)) < COLOUR_DISTANCE
        region = _largest_region(near) if near.any() else near
        if region.any():
            region = _fill_holes(region)
        return Image.fromarray((region * 255).astype("uint8"), mode="L")
