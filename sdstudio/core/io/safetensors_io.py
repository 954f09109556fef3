"""Read and write .safetensors one tensor (or one block of rows) at a time.

Why not `safe_open`: it memory-maps the whole file, and every page a merge touches stays
counted in the process's resident memory until the file is closed, so reading two 2 GB
checkpoints "one tensor at a time" still ends at 4 GB RSS. `SafetensorsReader` validates the
header (offsets inside the file, no gaps or overlaps, sizes that match dtype x shape: a
truncated or corrupt file is refused before anything is merged) and then reads each tensor's
bytes with plain `readinto` into a fresh buffer.

`SafetensorsStreamWriter` takes every name, dtype and shape up front, writes the header, then
accepts tensors in that order, whole or in consecutive row blocks. Metadata values may be
patched at the end with strings of the same length (hashes computed while the merge ran).
It writes into a file the caller renames into place (see `atomic.atomic_path`).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sdstudio.core.errors import ModelError

_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit on the JSON header


def read_header(fh: BinaryIO, size: int) -> tuple[dict[str, Any], dict[str, str], int]:
    """(tensor entries, metadata, header length) of an open .safetensors stream of `size` bytes.

    The one place the 8-byte length and JSON header are parsed; ValueError says what is wrong.
    """
    raw = fh.read(8)
    if len(raw) != 8:
        raise ValueError(f"only {size} bytes, shorter than a header")
    (n,) = struct.unpack("<Q", raw)
    if n > MAX_HEADER or 8 + n > size:
        raise ValueError(f"header length {n} does not fit in a {size}-byte file")
    try:
        header = json.loads(fh.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    return header, {str(k): str(v) for k, v in metadata.items()}, n


def read_file_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, str], int]:
    """`read_header` of a file; ModelError names the file."""
    try:
        with open(path, "rb") as fh:
            return read_header(fh, os.fstat(fh.fileno()).st_size)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable .safetensors file ({exc})") from None


def torch_dtype(code: str) -> Any:
    import torch

    return getattr(torch, _DTYPES[code])


def dtype_code(dtype: Any) -> str:
    name = str(dtype).removeprefix("torch.")
    for code, torch_name in _DTYPES.items():
        if torch_name == name:
            return code
    raise ModelError(f"dtype {dtype} cannot be stored in .safetensors by sdstudio")


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors code: F16, F32, BF16, ...
    shape: tuple[int, ...]
    start: int  # absolute file offsets
    end: int

    @property
    def is_float(self) -> bool:
        return self.dtype in ("F64", "F32", "F16", "BF16")

    @property
    def row_bytes(self) -> int:
        return (self.end - self.start) // self.shape[0] if self.shape and self.shape[0] else self.end - self.start


class SafetensorsReader:
    """A validated .safetensors file; tensors are read on demand."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        try:
            self._fh = open(self.path, "rb")
        except OSError as exc:
            raise ModelError(f"{self.path}: cannot open ({exc.strerror})") from None
        try:
            self.tensors, self.metadata = self._parse()
        except Exception:
            self._fh.close()
            raise

    def _bad(self, why: str) -> ModelError:
        return ModelError(f"{self.path}: corrupt or truncated .safetensors file ({why}); re-download or re-export it")

    def _parse(self) -> tuple[dict[str, TensorInfo], dict[str, str]]:
        size = os.fstat(self._fh.fileno()).st_size
        try:
            header, metadata, n = read_header(self._fh, size)
        except ValueError as exc:
            raise self._bad(str(exc)) from None
        base = 8 + n
        infos: dict[str, TensorInfo] = {}
        for key, entry in header.items():
            try:
                code, shape, (start, end) = entry["dtype"], tuple(int(s) for s in entry["shape"]), entry["data_offsets"]
            except (TypeError, KeyError, ValueError):
                raise self._bad(f"entry {key!r} lacks dtype/shape/data_offsets") from None
            if code not in _SIZES:
                raise self._bad(f"tensor {key!r} has unsupported dtype {code}")
            if end - start != math.prod(shape) * _SIZES[code] or start < 0:
                raise self._bad(f"tensor {key!r}: {end - start} bytes for shape {list(shape)} of {code}")
            infos[key] = TensorInfo(code, shape, base + int(start), base + int(end))
        expected = base
        for info in sorted(infos.values(), key=lambda i: i.start):
            if info.start != expected:
                raise self._bad(f"tensor data has a gap or overlap at byte {info.start}")
            expected = info.end
        if expected != size:
            what = "truncated" if expected > size else "has trailing bytes"
            raise self._bad(f"{what}: the header describes {expected} bytes, the file has {size}")
        return infos, metadata

    def read(self, key: str, start: int = 0, stop: int | None = None) -> Any:
        """Rows [start, stop) of a tensor (the whole tensor by default), as a new CPU tensor."""
        import torch

        info = self.tensors[key]
        rows = info.shape[0] if info.shape else 1
        stop = rows if stop is None else min(stop, rows)
        nbytes = (stop - start) * info.row_bytes if info.shape else info.end - info.start
        buf = torch.empty(nbytes, dtype=torch.uint8)
        self._fh.seek(info.start + start * info.row_bytes)
        if nbytes and self._fh.readinto(memoryview(buf.numpy())) != nbytes:
            raise self._bad(f"tensor {key!r} ends early")
        shape = ((stop - start),) + info.shape[1:] if info.shape else ()
        return buf.view(torch_dtype(info.dtype)).reshape(shape)

    def close(self) -> None:
        self._fh.close()


class SafetensorsStreamWriter:
    """Header first, then tensors in the announced order (whole, or in consecutive row blocks)."""

    def __init__(self, path: str | os.PathLike[str], entries: list[tuple[str, str, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None):
        self.path = Path(path)
        header: dict[str, Any] = {}
        if metadata:
            header["__metadata__"] = dict(metadata)
        offset = 0
        self._order: list[tuple[str, int]] = []
        for key, code, shape in entries:
            nbytes = math.prod(shape) * _SIZES[code]
            header[key] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._order.append((key, nbytes))
            offset += nbytes
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)  # data starts 8-byte aligned
        self._header = text
        self.total_bytes = offset
        self._fh = open(self.path, "wb")
        self._fh.write(struct.pack("<Q", len(text)) + text)
        self._index = 0
        self._written_in_current = 0
        self.written_bytes = 0

    def write(self, key: str, tensor: Any) -> None:
        """Append `tensor` (the whole of `key`, or its next rows)."""
        import torch

        if self._index >= len(self._order) or self._order[self._index][0] != key:
            expected = self._order[self._index][0] if self._index < len(self._order) else "nothing"
            raise ModelError(f"internal: wrote {key!r} while {expected!r} was due")
        data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
        self._fh.write(memoryview(data))
        self._written_in_current += data.nbytes
        self.written_bytes += data.nbytes
        due = self._order[self._index][1]
        if self._written_in_current > due:
            raise ModelError(f"internal: {key!r} got more bytes than its shape holds")
        if self._written_in_current == due:
            self._index += 1
            self._written_in_current = 0

    def patch_metadata(self, replacements: dict[str, str]) -> None:
        """Swap placeholder strings in the header for final values of the same length."""
        text = self._header
        for old, new in replacements.items():
            if len(old.encode()) != len(new.encode()):
                raise ModelError("internal: a metadata patch must keep its length")
            text = text.replace(old.encode(), new.encode())
        self._fh.flush()
        os.pwrite(self._fh.fileno(), text, 8)
        self._header = text

    def close(self) -> None:
        """Check every tensor arrived and flush to disk."""
        if self._index != len(self._order):
            self._fh.close()
            raise ModelError(f"internal: {len(self._order) - self._index} tensors were never written")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def abort(self) -> None:
        """Close without caring about unflushed bytes (the caller deletes the file)."""
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError:
                pass  # the flush of a failed write fails again
