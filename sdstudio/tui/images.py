"""Terminal images: the one place that imports textual-image.

textual-image probes the terminal (Sixel, Kitty graphics, cell size) when it is imported, and
the probe must finish before Textual takes over stdin. On 0.12 that probe can hang on a slow
SSH link and divides by zero on a 0x0 terminal, so the import here is guarded:

* a forced half-cell or Unicode renderer never probes (the import sees no TTY);
* a missing TTY or a 0x0 terminal skips the probe and falls back to half-cell / Unicode;
* an import that fails anyway leaves the studio running with text placeholders.

Images are shrunk with PIL before they reach a widget, so a Sixel/Kitty terminal is never sent
a full-size PNG per thumbnail.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import Static

from sdstudio.tui.settings import RENDERERS

ENV_VAR = "SDSTUDIO_IMAGES"
THUMB_PX = {"sixel": 192, "kitty": 192, "halfcell": 96, "unicode": 96, "text": 1}
PREVIEW_PX = {"sixel": 512, "kitty": 512, "halfcell": 192, "unicode": 192, "text": 1}

_state: dict[str, Any] = {"renderer": None, "widget": None}


def choose_renderer(cli: str | None = None, config: str | None = None) -> str:
    """The renderer the user asked for: --images, then $SDSTUDIO_IMAGES, then the config file."""
    for value, where in ((cli, "--images"), (os.environ.get(ENV_VAR), f"${ENV_VAR}"), (config, "config")):
        if value:
            if value not in RENDERERS:
                from sdstudio.core.errors import SdstudioError

                raise SdstudioError(f"{where}: unknown image renderer {value!r} (use one of {', '.join(RENDERERS)})")
            return value
    return "auto"


def terminal_usable(stream: Any = None) -> bool:
    """A real terminal with a non-zero size: only then is probing it safe."""
    stream = stream if stream is not None else sys.__stdout__
    try:
        if stream is None or not stream.isatty():
            return False
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return size.columns > 0 and size.lines > 0


def _isatty() -> bool:
    try:
        return bool(sys.__stdout__ is not None and sys.__stdout__.isatty())
    except (OSError, ValueError):
        return False


class _NoTTY:
    """Stands in for sys.__stdout__ during the import so textual-image does not probe."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextlib.contextmanager
def _hidden_tty(hide: bool) -> Iterator[None]:
    if not hide:
        yield
        return
    real = sys.__stdout__
    sys.__stdout__ = _NoTTY(real)  # type: ignore[misc]
    try:
        yield
    finally:
        sys.__stdout__ = real  # type: ignore[misc]


def init_images(choice: str = "auto") -> str:
    """Decide the renderer (call before the app starts) and return its name.

    Only a probe needs textual-image imported now, before Textual owns stdin; otherwise the
    import (numpy, PIL: ~0.2 s) waits until the first image is shown, after the first paint.
    """
    if _state["renderer"] is not None:
        return _state["renderer"]
    tty = terminal_usable()
    if tty and choice in ("auto", "sixel", "kitty"):
        module = _import_widgets(probe=True)
        if module is None:
            renderer = "text"
        elif choice == "auto":
            found = {cls: name for name, cls in _classes(module).items()}
            renderer = found.get(module.Image, "halfcell")
        else:
            renderer = choice
    elif choice in ("halfcell", "unicode"):
        renderer = choice
    else:  # auto or a graphics protocol without a usable terminal (none, or 0x0): no probe
        renderer = "halfcell" if _isatty() else "unicode"
    _state["renderer"] = renderer
    return renderer


def _classes(module: Any) -> dict[str, Any]:
    return {"sixel": module.SixelImage, "kitty": module.TGPImage, "halfcell": module.HalfcellImage,
            "unicode": module.UnicodeImage}


def _import_widgets(probe: bool) -> Any | None:
    try:
        with _hidden_tty(not probe):
            import textual_image.widget as module
    except Exception:  # the probe itself failed: keep the studio up, show text instead of pictures
        return None
    return module


def image_widget_class() -> Any | None:
    """The textual-image widget class for the renderer in use (None: text only)."""
    name = renderer()
    if name == "text":
        return None
    if _state["widget"] is None:
        module = _import_widgets(probe=False)
        if module is None:
            _state["renderer"] = "text"
            return None
        _state["widget"] = _classes(module)[name]
    return _state["widget"]


def renderer() -> str:
    """The renderer in use (initialising with the environment's choice if nobody did)."""
    return _state["renderer"] or init_images(choose_renderer())


@lru_cache(maxsize=256)
def _thumbnail(path: str, mtime_ns: int, max_px: int) -> Any:
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((max_px, max_px))
        return im.copy()


def load_thumbnail(path: Path, max_px: int) -> Any | None:
    """A PIL image no larger than max_px on its longer side, or None if the file is unreadable."""
    try:
        return _thumbnail(str(path), path.stat().st_mtime_ns, max_px)
    except (OSError, ValueError):
        return None


class LazyImage(Container):
    """Stands where the textual-image widget goes and creates it on the first real image,
    so screens can be composed (and painted) before textual-image is imported."""

    DEFAULT_CSS = "LazyImage { width: 100%; height: auto; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._image: Any = None

    @property
    def image(self) -> Any:
        return self._image

    @image.setter
    def image(self, value: Any) -> None:
        self._image = value
        children = self.children
        if children:
            children[0].image = value  # type: ignore[attr-defined]
        elif value is not None:
            cls = image_widget_class()
            if cls is not None:
                widget = cls(value)
                widget.styles.width = "auto"
                widget.styles.height = "auto"
                self.mount(widget)


class Picture(Container):
    """A box that shows one image (shrunk for the renderer) or a one-line text stand-in."""

    DEFAULT_CSS = """
    Picture { height: auto; width: 1fr; }
    Picture > .picture-image { width: 100%; height: auto; }
    Picture > .picture-text { color: $text-muted; }
    """

    def __init__(self, path: Path | None = None, *, image: Any = None, large: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._path = path
        self._image = image
        self._large = large

    def compose(self) -> ComposeResult:
        if renderer() != "text":
            yield LazyImage(classes="picture-image")
        yield Static("", classes="picture-text")

    def on_mount(self) -> None:
        if self._image is not None:
            self.show_image(self._image)
        else:
            self.show(self._path)

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def image(self) -> Any:
        """The in-memory image shown (crops, fresh generations, merge previews), or None."""
        return self._image

    @image.setter
    def image(self, value: Any) -> None:
        self.show_image(value)

    def show_image(self, image: Any) -> None:
        """Display a PIL image that never touched the disk (shrunk for the renderer); None clears."""
        self._image, self._path = image, None
        if not self.is_mounted or not self.query(".picture-text"):
            return  # on_mount shows it once the box is composed
        shown = None
        if image is not None:
            limit = (PREVIEW_PX if self._large else THUMB_PX)[renderer()]
            shown = image.copy()
            shown.thumbnail((limit, limit))
        text = self.query_one(".picture-text", Static)
        pictures = self.query(".picture-image")
        if pictures and renderer() != "text":
            pictures.first().image = shown
            text.display = False
        else:
            text.update("" if image is None else f"[{image.width}x{image.height} image]")

    def show(self, path: Path | None) -> None:
        """Display `path` (None clears the box)."""
        self._path, self._image = path, None
        if not self.query(".picture-text"):
            return  # on_mount shows it once the box is composed
        sizes = PREVIEW_PX if self._large else THUMB_PX
        image = load_thumbnail(path, sizes[renderer()]) if path is not None else None
        text = self.query_one(".picture-text", Static)
        pictures = self.query(".picture-image")
        if pictures and renderer() != "text":
            pictures.first().image = image
            text.update("" if image is not None or path is None else f"(unreadable: {path.name})")
            text.display = image is None and path is not None
        else:
            text.update(path.name if path is not None else "")
