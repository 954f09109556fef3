"""A full fine-tune's weights in and out of a checkpoint (the layout is core/full/layout.py).

Written by the models' own `save_pretrained` (diffusers for the UNet, transformers for the text
encoders): safetensors, sharded above MAX_SHARD_SIZE, loadable by `from_pretrained` and by
export. Written in the dtype they train in (fp32 master weights, or bf16), so that a resume
continues from the very same numbers; exports convert (f16 by default).

Read back shard by shard into the live modules (the resume): `from_pretrained` would build a
second model, where copying each tensor into place needs no more memory than one shard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdstudio.core.full.layout import model_dir

MAX_SHARD_SIZE = "5GB"  # SDXL's fp32 UNet (10.3 GB) is three files; SD 1.5's (3.4 GB) one


def save_components(checkpoint: Path, models: dict[str, Any], ema: bool = False) -> None:
    """Each model's `save_pretrained` into `checkpoint/model/<name>/` (`ema`: `ema/<name>/`)."""
    root = model_dir(checkpoint, ema)
    for name, model in models.items():
        folder = root / name
        if hasattr(model, "save_config"):  # diffusers
            model.save_pretrained(folder, safe_serialization=True, max_shard_size=MAX_SHARD_SIZE)
        else:  # transformers: always safetensors; no "Writing model shards" bar in the run's log
            import transformers.utils.logging as tlog

            tlog.disable_progress_bar()
            model.save_pretrained(folder, max_shard_size=MAX_SHARD_SIZE)


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files of one saved model: those its index names, else the single file."""
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = json.loads(indexes[0].read_text(encoding="utf-8"))["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise FileNotFoundError(f"{folder}: expected one .safetensors file or an index, found {len(files)}")
    return files


def read_tensors(folder: Path) -> Any:
    """(key, tensor) of one saved model, a shard at a time."""
    from safetensors.torch import load_file

    for path in shard_files(folder):
        yield from load_file(str(path)).items()


def load_into(folder: Path, model: Any) -> None:
    """Copy the weights saved in `folder` into `model`'s parameters and buffers (same keys, all of
    them: a missing or unexpected key is an error naming it)."""
    import torch

    state = model.state_dict(keep_vars=True)
    seen = set()
    with torch.no_grad():
        for key, tensor in read_tensors(folder):
            if key not in state:
                raise ValueError(f"{folder}: holds {key!r}, which the model does not have")
            state[key].data.copy_(tensor)
            seen.add(key)
    missing = [k for k in state if k not in seen and not k.endswith("position_ids")]
    if missing:
        raise ValueError(f"{folder}: lacks {len(missing)} of the model's weights, e.g. {missing[0]!r}")


def digest(models: dict[str, Any]) -> str:
    """sha256 of every trained weight (names and exact bytes): equal digests, equal weights."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, model in models.items():
        for key, value in sorted(model.state_dict().items()):
            h.update(f"{name}.{key}".encode())
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
