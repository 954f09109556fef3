"""A full fine-tune's checkpoint as a pipeline: the base model with the checkpoint's components.

`checkpoint_components` gives `models.load_pipeline` the components to build the pipeline with
(what Generate and the merge preview load); `checkpoint_weights` swaps one checkpoint's weights into an already
loaded pipeline of the same base and puts the base's back afterwards, so `sdstudio score` walks
many checkpoints with one pipeline, as it does with LoRA files. Components are read with the
libraries' own `from_pretrained` (sharded safetensors, transformers' key prefixes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sdstudio.core.errors import ModelError
from sdstudio.core.full.checkpoint_model import FullCheckpoint, require_full_checkpoint


def _component_class(name: str) -> Any:
    if name == "unet":
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    return CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel


def load_component(name: str, folder: Path, torch_dtype: Any) -> Any:
    """One trained component from its `save_pretrained` folder, in `torch_dtype`."""
    cls = _component_class(name)
    try:
        if name == "unet":
            return cls.from_pretrained(str(folder), torch_dtype=torch_dtype)
        return cls.from_pretrained(str(folder), dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{folder}: cannot load the checkpoint's {name} ({first})") from None


def checkpoint_components(checkpoint: FullCheckpoint | str | os.PathLike[str], torch_dtype: Any,
                          ema: bool | None = None) -> tuple[str, dict[str, Any]]:
    """(the run's base model, the checkpoint's components loaded in `torch_dtype`): what
    `models.load_pipeline` puts together, the base's own copies of those components never loaded.
    EMA weights when the checkpoint has them, unless `ema` says otherwise."""
    full = require_full_checkpoint(checkpoint, ema)
    return full.base_spec(), {name: load_component(name, folder, torch_dtype) for name, folder in full.components.items()}


@contextlib.contextmanager
def checkpoint_weights(pipe: Any, checkpoint: FullCheckpoint | str | os.PathLike[str],
                       ema: bool | None = None) -> Iterator[FullCheckpoint]:
    """Inside the block, `pipe` (loaded from the checkpoint's base) carries the checkpoint's weights;
    after it, the weights it had before. The previous weights wait on the CPU meanwhile."""
    import torch

    full = require_full_checkpoint(checkpoint, ema)
    saved: dict[str, dict[str, Any]] = {}
    try:
        for name, folder in full.components.items():
            module = getattr(pipe, name, None)
            if module is None:
                raise ModelError(f"{folder}: the pipeline has no {name} to put this checkpoint's weights in")
            param = next(module.parameters())
            loaded = load_component(name, folder, param.dtype)
            saved[name] = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            with torch.no_grad():
                module.load_state_dict(loaded.state_dict(), strict=True)
            del loaded
        yield full
    finally:
        with torch.no_grad():
            for name, state in saved.items():
                getattr(pipe, name).load_state_dict(state, strict=True)
