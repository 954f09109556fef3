"""Where an image's subject mask comes from, and reading it.

An image's mask is, in this order: its own alpha channel (when some pixel is not opaque),
`NAME-mask.png` beside it, `mask_dir/NAME.png` (NAME: the image's path in its dataset without
its suffix). White is the subject. The order is kohya's and OneTrainer's conventions merged:
a cut-out PNG needs no second file, and a mask folder keeps the image folder clean.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MASK_SUFFIX = "-mask"
MASK_EXT = ".png"
ALPHA, BESIDE, MASK_DIR = "alpha", "beside", "mask_dir"
MASKS_LOG = "masks.log.jsonl"  # the passes of `sdstudio dataset mask`, for --undo (core/masks/making.py)


@dataclass(frozen=True)
class MaskRef:
    """Where one image's mask is: `origin` is alpha, beside or mask_dir; `path` the file holding it."""

    origin: str
    path: Path


def mask_beside(image: Path) -> Path:
    """`NAME-mask.png` next to the image."""
    return image.with_name(image.stem + MASK_SUFFIX + MASK_EXT)


def mask_in_dir(image: Path, root: Path, mask_dir: Path) -> Path:
    """`mask_dir/NAME.png`, NAME the image's path below the dataset root without its suffix."""
    rel = image.relative_to(root).with_suffix(MASK_EXT)
    return mask_dir / rel


def is_mask_name(name: str, siblings: set[str]) -> bool:
    """True for `NAME-mask.png` when an image of stem NAME is in the same folder (`siblings`:
    the folder's file names). A dataset walk skips these; an image that merely ends in -mask stays."""
    low = name.lower()
    if not low.endswith(MASK_SUFFIX + MASK_EXT):
        return False
    stem = name[: -len(MASK_SUFFIX + MASK_EXT)]
    return any(os.path.splitext(s)[0] == stem and s != name for s in siblings)


def _has_alpha(image: Path) -> bool:
    from PIL import Image

    with Image.open(image) as im:
        if im.mode not in ("RGBA", "LA", "PA") and not (im.mode == "P" and "transparency" in im.info):
            return False
        alpha = im.convert("RGBA").getchannel("A")
        return alpha.getextrema()[0] < 255  # fully opaque alpha says nothing about the subject


def find_mask(image: Path, root: Path, mask_dir: Path | None = None) -> MaskRef | None:
    """The image's mask source in precedence order, or None when it has none."""
    if image.suffix.lower() in (".png", ".webp", ".tif", ".tiff") and _has_alpha(image):
        return MaskRef(ALPHA, image)
    beside = mask_beside(image)
    if beside.is_file():
        return MaskRef(BESIDE, beside)
    if mask_dir is not None:
        in_dir = mask_in_dir(image, root, mask_dir)
        if in_dir.is_file():
            return MaskRef(MASK_DIR, in_dir)
    return None


def read_mask(ref: MaskRef) -> Any:
    """The mask as a PIL "L" image at its file's own size (EXIF orientation applied), 255 = subject."""
    from PIL import Image, ImageOps

    with Image.open(ref.path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        if ref.origin == ALPHA:
            return im.convert("RGBA").getchannel("A")
        if im.mode in ("RGBA", "LA") and im.getchannel("A").getextrema()[0] < 255:
            return im.getchannel("A")  # a mask drawn as a cut-out
        return im.convert("L")


def load_mask(image: Path, root: Path, mask_dir: Path | None = None) -> Any:
    """The image's mask ("L", its file's size), or None when the image has none."""
    ref = find_mask(image, root, mask_dir)
    return read_mask(ref) if ref is not None else None


def coverage(mask: Any) -> float:
    """Share of the picture that is subject: the mean of the mask in [0, 1]."""
    import numpy as np

    return float(np.asarray(mask, dtype=np.float32).mean() / 255.0)
