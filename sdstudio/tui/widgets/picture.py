"""An image box fed with in-memory PIL images (crops, fresh generations, merge previews).

`sdstudio.tui.images.Picture` shows files; the Dataset, Generate and Merge screens mostly have
images that never touch the disk, so this subclass adds an `image` property that shrinks the
image for the renderer in use and hands it to the same inner widget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Static

from sdstudio.tui import images


class ImageBox(images.Picture):
    """A `Picture` whose content can also be set from a PIL image: `box.image = pil_image`."""

    def __init__(self, image: Any = None, *, large: bool = False, **kwargs: Any) -> None:
        super().__init__(None, large=large, **kwargs)
        self._pending = image
        self._image: Any = None

    @property
    def image(self) -> Any:
        return self._image

    @image.setter
    def image(self, value: Any) -> None:
        self._image = value
        self._pending = value
        if not self.is_mounted:
            return
        shown = None
        if value is not None:
            limit = (images.PREVIEW_PX if self._large else images.THUMB_PX)[images.renderer()]
            shown = value.copy()
            shown.thumbnail((limit, limit))
        text = self.query_one(".picture-text", Static)
        inner = self.query(".picture-image")
        if inner:
            inner.first().image = shown
            text.display = False
        else:
            text.update("" if value is None else f"[{value.width}x{value.height} image]")

    def show(self, path: Path | None) -> None:
        """Show a file, like `Picture.show`; `Picture` calls show(None) on mount, which keeps
        an image given to the constructor."""
        if path is None and self._pending is not None:
            self.image = self._pending
            return
        self._image = self._pending = None
        super().show(path)


def picture(image: Any = None, *, large: bool = False, **kwargs: Any) -> ImageBox:
    return ImageBox(image, large=large, **kwargs)
