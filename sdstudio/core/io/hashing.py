"""File hashes: the model identity in run.toml, merge recipes and A1111's LoRA hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any


def file_sha256(path: str | os.PathLike[str], offset: int = 0) -> str:
    """SHA-256 of a file from `offset` on, read through one reused buffer.

    One buffer, not fresh blocks: a merge hashes its inputs on a second thread, and fresh 4 MB
    blocks from that thread grew the heap by hundreds of MB.
    """
    h = hashlib.sha256()
    buf = bytearray(1 << 22)
    view = memoryview(buf)
    with open(path, "rb") as fh:
        fh.seek(offset)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def safetensors_short_hash(path: str | os.PathLike[str]) -> str | None:
    """A1111's LoRA hash: SHA-256 of a .safetensors file after its header, first 12 hex digits."""
    from sdstudio.core.io.safetensors_io import read_file_header

    if not str(path).endswith(".safetensors"):
        return None
    _, _, n = read_file_header(path)
    return file_sha256(path, offset=8 + n)[:12]


def tensors_sha256(tensors: Mapping[str, Any]) -> str:
    """"0x" + SHA-256 of the tensor bytes of the file safetensors would write for `tensors` (header
    excluded), as modelspec's `hash_sha256` asks: metadata does not change it, and it equals
    `file_sha256` of that file after its header."""
    import io

    from safetensors.torch import save

    from sdstudio.core.io.safetensors_io import read_header

    blob = save(dict(tensors))
    _, _, header_len = read_header(io.BytesIO(blob), len(blob))
    return "0x" + hashlib.sha256(memoryview(blob)[8 + header_len:]).hexdigest()
