"""What the model sees of one picture: the geometry that turns a file into a training image.

One `View` describes it: the region of the file used (the whole picture, or its subject crop
box), the size that region is resized to, where the target (the square or the bucket) is cut
from the resized region, and whether it is mirrored. The image and its mask go through the same
`View.render`, so the mask covers exactly the pixels it covers in the picture; the Dataset
screen's preview (preview.py) renders the same way, so what it shows is what the trainer encodes.

A crop box (`[x, y, w, h]` in the file's pixels, core/masks/crops.py) replaces the centre or
random crop: the box is cut out, resized until it covers the target (the shortest side to the
resolution, or the smallest cover of the bucket placed by the box's own size) and the leftover
is cropped centred. So a boxed picture has one fixed crop (its latents can be cached).

SDXL's size/crop conditioning follows the box, as SDXL was trained: original size = the file's
(height, width); crop top-left = where the target's corner lies in the whole picture resized by
the same scale (the box's corner times the scale, plus the centred leftover), mirrored when
flipped; target size = what the model sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdstudio.core.masks.crops import Box



@dataclass(frozen=True)
class View:
    """How one picture becomes the model's input."""

    size: tuple[int, int]  # the file's (width, height)
    box: Box | None  # the region used (a subject crop), None for the whole picture
    resized: tuple[int, int]  # the region's size after resizing
    left_top: tuple[int, int]  # the target's corner inside the resized region
    target: tuple[int, int]  # (width, height) the model sees
    scale: float  # resized / region
    flip: bool = False

    def render(self, image: Any) -> Any:
        """The picture (RGB) or its mask ("L", resized to the file's size first) as the model sees it."""
        from PIL import Image

        if image.size != self.size:  # a mask drawn at another size still covers the whole picture
            image = image.resize(self.size, Image.Resampling.BILINEAR)
        if self.box is not None:
            x, y, w, h = self.box
            image = image.crop((x, y, x + w, y + h))
        left, top = self.left_top
        tw, th = self.target
        out = image.resize(self.resized, Image.Resampling.BILINEAR).crop((left, top, left + tw, top + th))
        return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if self.flip else out

    def outline(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of what the model sees, in the file's pixels (for previews)."""
        x0, y0 = (self.box[0], self.box[1]) if self.box is not None else (0, 0)
        left, top = self.left_top
        tw, th = self.target
        return (x0 + left / self.scale, y0 + top / self.scale, x0 + (left + tw) / self.scale, y0 + (top + th) / self.scale)

    def conditioning(self) -> tuple[int, ...]:
        """SDXL's (original height, width, crop top, crop left, target height, width); see the module's doc."""
        w, h = self.size
        tw, th = self.target
        left, top = self.left_top
        if self.box is None:
            whole_w, crop_left, crop_top = self.resized[0], left, top
        else:
            whole_w = max(tw, round(w * self.scale))
            crop_left = round(self.box[0] * self.scale) + left
            crop_top = round(self.box[1] * self.scale) + top
        shown_left = max(0, whole_w - tw - crop_left) if self.flip else crop_left
        return (h, w, crop_top, shown_left, th, tw)


def region_size(size: tuple[int, int], box: Box | None) -> tuple[int, int]:
    """The (width, height) of what is resized: the box, or the whole picture."""
    return (box[2], box[3]) if box is not None else size


def plan(size: tuple[int, int], resolution: int, placement: Any = None, box: Box | None = None,
         center: bool = True, flip: bool = False, rng: Any = None) -> View:
    """The view of a picture of `size`: in its bucket (`placement`, a buckets.Placement made from the
    region's size) or as a `resolution` square; the crop centred or drawn from `rng` (always centred with a box)."""
    center = center or box is not None
    if placement is not None:
        return View(size, box, placement.resized, placement.crop(center, rng), placement.bucket, placement.scale, flip)
    rw, rh = region_size(size, box)
    scale = resolution / min(rw, rh)
    resized = (max(resolution, round(rw * scale)), max(resolution, round(rh * scale)))
    dx, dy = resized[0] - resolution, resized[1] - resolution
    left_top = (dx // 2, dy // 2) if center or rng is None else (rng.randint(0, dx), rng.randint(0, dy))
    return View(size, box, resized, left_top, (resolution, resolution), scale, flip)
