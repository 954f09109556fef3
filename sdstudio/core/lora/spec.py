"""`FILE[:SCALE]`, the way a LoRA and its strength are written on every command line and screen."""

from __future__ import annotations

import os
from pathlib import Path


def parse_lora_spec(text: str) -> tuple[Path, float]:
    """`FILE[:SCALE]` -> (file, scale). The scale is what follows the last colon when it is a
    number, so a Windows-style `C:/...` path is not split; `~` is expanded."""
    path, scale = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            scale = float(tail)
            path = head
        except ValueError:
            pass
    return Path(os.path.expanduser(path)), scale
