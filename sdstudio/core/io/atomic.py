"""Atomic file writes: write a temporary sibling, fsync, rename into place, fsync the folder.

A crash, a kill or a full disk leaves either the old file or the new one, never half of one.
Files get the mode an ordinary write would give (0666 less the umask: 0644 under umask 022),
not mkstemp's 0600, so A1111 or ComfyUI running as another user can read an export.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (reading it means setting it: done under a lock, restored at once)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike[str], directory: bool = False) -> None:
    """Give a temporary file (mkstemp: 0600) or folder (mkdtemp: 0700) the mode a plain write
    or mkdir would have given it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in `path` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds.
    Nothing is written inside the installed package or site-packages (PermissionError)."""
    from sdstudio.core.paths import inside_installation

    target = Path(path)
    if inside_installation(target):
        raise PermissionError(errno.EACCES, "sdstudio does not write inside the Python installation; choose a "
                                            "folder of your own (the home, ~/sdstudio, holds runs and exports)",
                              str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        apply_umask(tmp_path)
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_safetensors(tensors: dict[str, Any], path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, atomically (tensors made contiguous first)."""
    from safetensors.torch import save_file

    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(contiguous, str(tmp), metadata=metadata)


def save_image(image: Any, path: str | os.PathLike[str], **save_kwargs: Any) -> None:
    """Save a PIL image atomically; the format comes from `path`'s suffix."""
    target = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(target.suffix.lower(), "PNG")
    with atomic_path(target, suffix=target.suffix) as tmp:
        image.save(tmp, format=fmt, **save_kwargs)


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line with a single O_APPEND write, so readers never see a torn line
    except after a crash mid-write (readers skip a line that does not parse). A torn last
    line is ended first, so it costs only itself, never the row appended after it."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(os.fspath(path), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
    finally:
        os.close(fd)
