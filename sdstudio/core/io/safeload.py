"""Loading PyTorch pickles without running their code (`weights_only=True`)."""

from __future__ import annotations

import os
from typing import Any

from sdstudio.core.errors import SdstudioError


class UnsafeFileError(SdstudioError):
    """A pickle that would run code (or import arbitrary objects) when loaded."""


def load_pickle_state_dict(path: str | os.PathLike[str], mmap: bool = False) -> dict[str, Any]:
    """`torch.load(weights_only=True)`; refuses a pickle that needs anything but tensors and containers.

    A `.ckpt` wrapping its weights in `{"state_dict": ...}` is unwrapped. `mmap=True` maps the
    tensors from the file instead of reading them into memory (zip-format files; older
    pickles are read whole).
    """
    import pickle
    import zipfile

    import torch

    use_mmap = mmap and zipfile.is_zipfile(os.fspath(path))
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UnsafeFileError(
            f"{path}: refused to load: this pickle asks to run or import code that a weights file does not need "
            f"({first}). Nothing from it was executed. Only load files from sources you trust; convert to "
            ".safetensors where possible."
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise SdstudioError(f"{path}: not a readable PyTorch file ({str(exc).splitlines()[0]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise SdstudioError(f"{path}: expected a dict of tensors, found a {type(obj).__name__}")
    return obj
