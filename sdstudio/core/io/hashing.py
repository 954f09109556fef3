"""File hashes: the model identity in run.toml, merge recipes and A1111's LoRA hash."""

from __future__ import annotations

import hashlib
import os


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
