"""Where a merge writes: an A1111 single file or a diffusers folder, streamed and atomic.

Both outputs know every tensor's name, dtype and shape before the first byte (the header is
written up front), take tensors in that order as the merge computes them, and appear under
their final name only when complete: a temporary sibling (`.NAME.<random>.tmp`) is renamed into
place after fsync, and removed on any error. A killed process can leave the temporary file
behind, never a half-written OUT.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sdstudio.core.errors import ModelError
from sdstudio.core.io.atomic import apply_umask, fsync_dir
from sdstudio.core.io.layouts import layout_of_folder
from sdstudio.core.io.ldm_layout import from_ldm_tensor
from sdstudio.core.filetypes import PICKLE_SUFFIXES, WEIGHT_NAMES
from sdstudio.core.io.safetensors_io import SafetensorsStreamWriter

Entry = tuple[str, str, tuple[int, ...]]  # LDM key, safetensors dtype code, LDM shape
_WEIGHT_SUFFIXES = (".safetensors", ".index.json", *PICKLE_SUFFIXES)


def _disk_error(out: Path, exc: OSError) -> ModelError:
    return ModelError(f"{out}: writing failed ({exc.strerror or exc}); no output was left behind. "
                      "Free some disk space or choose another -o location.")


class SingleFileOutput:
    """One A1111-layout .safetensors."""

    def __init__(self, out: Path, entries: list[Entry], metadata: dict[str, str]):
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        try:
            self.writer = SafetensorsStreamWriter(self.tmp, entries, metadata)
        except OSError as exc:
            self.abort()
            raise _disk_error(out, exc) from None
        self.total_bytes = self.writer.total_bytes

    def can_chunk(self, key: str) -> bool:
        return True

    def write(self, key: str, tensor: Any) -> None:
        try:
            self.writer.write(key, tensor)
        except OSError as exc:
            self.abort()
            raise _disk_error(self.out, exc) from None

    def finish(self, patches: dict[str, str]) -> Path:
        try:
            self.writer.patch_metadata(patches)
            self.writer.close()
            apply_umask(self.tmp)
            os.replace(self.tmp, self.out)
            fsync_dir(self.out.parent)
        except OSError as exc:
            self.abort()
            raise _disk_error(self.out, exc) from None
        return self.out

    def abort(self) -> None:
        if hasattr(self, "writer"):
            self.writer.abort()
        self.tmp.unlink(missing_ok=True)


class DiffusersOutput:
    """A diffusers folder: configs, tokenizer and scheduler copied from `config_dir`, the three
    components' weights streamed from the LDM tensors (renamed, split, reshaped back)."""

    def __init__(self, out: Path, entries: list[Entry], metadata: dict[str, str], config_dir: Path):
        self.out = out
        self.layout = layout_of_folder(config_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        self.parts: dict[str, list[Any]] = {}
        per_comp: dict[str, list[Entry]] = {}
        for key, code, shape in entries:
            parts = self.layout.from_ldm(key)
            if parts is None:
                continue  # EMA copies, schedule buffers, position_ids: no place in a diffusers folder
            self.parts[key] = parts
            for part in parts:
                pshape = shape
                if part.op == "qkv":
                    pshape = (shape[0] // 3,) + shape[1:]
                elif part.op == "conv1x1" and len(shape) == 4:
                    pshape = shape[:2]
                elif part.op == "transpose":
                    pshape = tuple(shape[::-1])
                per_comp.setdefault(part.component, []).append((part.key, code, pshape))
        try:
            shutil.copytree(config_dir, self.tmp, dirs_exist_ok=True, ignore=self._skip_weights)
            self.writers = {comp: SafetensorsStreamWriter(self.tmp / comp / f"{WEIGHT_NAMES[comp]}.safetensors", ents,
                                                          metadata if comp == "unet" else {"format": "pt"})
                            for comp, ents in per_comp.items()}
        except OSError as exc:
            self.abort()
            raise _disk_error(out, exc) from None
        self.total_bytes = sum(w.total_bytes for w in self.writers.values())

    @staticmethod
    def _skip_weights(folder: str, names: list[str]) -> list[str]:
        if Path(folder).name not in WEIGHT_NAMES:
            return []
        return [n for n in names if n.endswith(_WEIGHT_SUFFIXES)]

    def can_chunk(self, key: str) -> bool:
        return all(p.op == "copy" for p in self.parts.get(key, []))

    def write(self, key: str, tensor: Any) -> None:
        try:
            for part in self.parts.get(key, []):
                self.writers[part.component].write(part.key, from_ldm_tensor(part, tensor))
        except OSError as exc:
            self.abort()
            raise _disk_error(self.out, exc) from None

    def finish(self, patches: dict[str, str]) -> Path:
        try:
            for comp, writer in self.writers.items():
                if comp == "unet":
                    writer.patch_metadata(patches)
                writer.close()
            apply_umask(self.tmp, directory=True)
            old = self.out.with_name(f".{self.out.name}.old")
            if self.out.exists():
                os.replace(self.out, old)
            os.replace(self.tmp, self.out)
            fsync_dir(self.out.parent)
            shutil.rmtree(old, ignore_errors=True)  # only once the new folder is in place
        except OSError as exc:
            self.abort()
            raise _disk_error(self.out, exc) from None
        return self.out

    def abort(self) -> None:
        for writer in getattr(self, "writers", {}).values():
            writer.abort()
        shutil.rmtree(self.tmp, ignore_errors=True)
