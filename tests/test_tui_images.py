"""Terminal images: who picks the renderer, the guarded import, shrunk thumbnails."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sdstudio.core.errors import SdstudioError
from sdstudio.tui import images


def test_renderer_choice_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDSTUDIO_IMAGES", "unicode")
    assert images.choose_renderer("sixel", "kitty") == "sixel"  # --images wins
    assert images.choose_renderer(None, "kitty") == "unicode"  # then the environment
    monkeypatch.delenv("SDSTUDIO_IMAGES")
    assert images.choose_renderer(None, "kitty") == "kitty"  # then the config file
    assert images.choose_renderer(None, None) == "auto"
    monkeypatch.setenv("SDSTUDIO_IMAGES", "png")
    with pytest.raises(SdstudioError, match=r"\$SDSTUDIO_IMAGES: unknown image renderer 'png'"):
        images.choose_renderer(None, None)


ON_ZERO_TERMINAL = r"""
import sys
from sdstudio.tui import images
print("usable", images.terminal_usable())
name = images.init_images("auto")
cls = images.image_widget_class()
print("renderer", name, cls.__name__)
"""


def test_zero_size_terminal_falls_back_to_halfcell_without_probing() -> None:
    """textual-image 0.12 divides by zero probing a 0x0 terminal; the studio must not."""
    master, slave = pty.openpty()  # a fresh pty reports 0 columns x 0 rows
    try:
        env = {k: v for k, v in os.environ.items() if k != "SDSTUDIO_IMAGES"}
        proc = subprocess.run([sys.executable, "-c", ON_ZERO_TERMINAL], stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                              env=env, timeout=60)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr.decode()
    text = out.decode(errors="replace")
    assert "usable False" in text
    assert "renderer halfcell HalfcellImage" in text


def test_thumbnails_are_shrunk_before_the_widget(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (1024, 512), "blue").save(path)
    thumb = images.load_thumbnail(path, 96)
    assert thumb.size == (96, 48)
    assert images.load_thumbnail(tmp_path / "missing.png", 96) is None
