"""Live merge preview: move a multiplier slider, see the merged model, no reloading.

API for the studio's merge screen:
    pipe = load_pipeline(model_a)                     # the live pipeline (any device/dtype)
    preview = PreviewMerger(pipe, model_b="b.safetensors", model_c=None, method="weighted-sum",
                            loras=[("style.safetensors", 1.0)])
    preview.apply(0.3)        # pipe's weights are now A merged with B at 0.3 (in place)
    image = pipe(...)         # generate with the merged weights
    preview.apply(0.6)        # a few ms on a GPU: no disk, no reload
    preview.restore()         # back to A exactly
    merge_files(...)          # write the chosen multiplier to disk (merge.py)

`PreviewMerger` reads B (and C) once, renamed to the pipeline's parameters through
`ldm_layout`, and keeps A's original values beside them on the pipeline's device: it holds
two extra copies of the merged components (add difference: A and B - C; LoRA only: A and the
summed LoRA deltas). `apply(M)` computes the same formulas as the file merge
(`merge.weighted_sum` / `merge.add_difference`, LoRAs added on top; with no B the multiplier
scales the LoRAs) straight into the parameters. With an fp32 pipeline the preview at M equals
the file merge at M written in fp32.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from sdstudio.core.errors import ModelError
from sdstudio.core.filetypes import COMPONENTS
from sdstudio.core.io.ldm_layout import LdmLayout, canonical_text_key, from_ldm_tensor
from sdstudio.core.merge.merger import CONV_IN, add_difference, weighted_sum



def pipeline_layout(pipe: Any) -> LdmLayout:
    """The single-file layout of a live StableDiffusionPipeline (or SDXL pipeline: SGM layout)."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        from sdstudio.core.io.sgm_layout import SgmLayout

        return SgmLayout(dict(pipe.unet.config), dict(pipe.vae.config), int(pipe.text_encoder.config.num_hidden_layers),
                         int(pipe.text_encoder_2.config.num_hidden_layers))
    family = "sd2" if pipe.unet.config.cross_attention_dim == 1024 else "sd1"
    return LdmLayout(dict(pipe.unet.config), dict(pipe.vae.config), family,
                     int(pipe.text_encoder.config.num_hidden_layers))


def _pipeline_params(pipe: Any, components: Sequence[str]) -> dict[tuple[str, str], Any]:
    params = {}
    for comp in components:
        for name, p in getattr(pipe, comp).named_parameters():
            params[(comp, canonical_text_key(name) if comp == "text_encoder" else name)] = p
    return params


class PreviewMerger:
    """Re-applies a merge multiplier to a live pipeline's weights in place."""

    def __init__(self, pipe: Any, model_b: str | os.PathLike[str] | None = None,
                 model_c: str | os.PathLike[str] | None = None, method: str = "weighted-sum",
                 loras: Sequence[tuple[str, float]] = (), components: Sequence[str] | None = None):
        import torch

        if model_b is None and not loras:
            raise ModelError("preview needs a model B or at least one LoRA")
        if method == "add-difference" and (model_b is None or model_c is None):
            raise ModelError("add-difference needs models B and C")
        self.pipe, self.method = pipe, method
        self.layout = pipeline_layout(pipe)
        if components is None:  # every weight-holding component (SDXL: both text encoders)
            components = COMPONENTS + (("text_encoder_2",) if getattr(pipe, "text_encoder_2", None) is not None else ())
        self._params = _pipeline_params(pipe, components)
        with torch.no_grad():
            self._base = {k: p.detach().clone() for k, p in self._params.items()}
            self._other = self._load_other(model_b, model_c) if model_b is not None else {}
            self._lora = self._load_loras(loras) if loras else {}
        self.multiplier: float | None = None

    def _load_other(self, model_b: Any, model_c: Any) -> dict[tuple[str, str], Any]:
        """B (or B - C) per parameter, in the parameter's dtype and device; A's value where absent."""
        from sdstudio.core.merge.sources import open_model

        src_b = open_model(model_b)
        src_c = open_model(model_c) if self.method == "add-difference" else None
        try:
            out: dict[tuple[str, str], Any] = {}
            for key in src_b.keys():
                parts = [p for p in self.layout.from_ldm(key) or [] if (p.component, p.key) in self._params]
                if not parts or (src_c is not None and key not in src_c):
                    continue  # no place in the pipeline; or (A1111) no C tensor, no difference
                ldm = src_b.read(key).float()
                if src_c is not None:
                    ldm = ldm - src_c.read(key).float()
                for part in parts:
                    target = self._params[(part.component, part.key)]
                    value = from_ldm_tensor(part, ldm)
                    if value.shape != target.shape:
                        value = self._widen(key, value, target)
                    out[(part.component, part.key)] = value.to(target.device, target.dtype)
            return out
        finally:
            src_b.close()
            if src_c is not None:
                src_c.close()

    def _widen(self, key: str, value: Any, target: Any) -> Any:
        """An inpainting A (9-channel conv_in) meets B on its first channels only."""
        if not (key == CONV_IN and value.dim() == 4 and value.shape[1] < target.shape[1]):
            raise ModelError(f"model B does not fit the pipeline: {key} has shape {list(value.shape)}, "
                             f"the pipeline {list(target.shape)}")
        import torch

        base = self._base[("unet", "conv_in.weight")].float()
        full = torch.zeros_like(base) if self.method == "add-difference" else base.clone()
        full[:, :value.shape[1]] = value
        return full

    def _load_loras(self, loras: Sequence[tuple[str, float]]) -> dict[tuple[str, str], Any]:
        from sdstudio.core.lora.formats import read_lora_file

        out: dict[tuple[str, str], Any] = {}
        for path, scale in loras:
            for (comp, module_path), module in read_lora_file(path).modules.items():
                key = (comp, f"{module_path}.weight")
                target = self._params.get(key)
                if target is None:
                    raise ModelError(f"{path}: LoRA module {comp}.{module_path} is not in the pipeline")
                delta = (module.delta() * float(scale)).reshape(target.shape)
                out[key] = out[key] + delta if key in out else delta
        return {k: v.to(self._params[k].device, self._params[k].dtype) for k, v in out.items()}

    def apply(self, multiplier: float) -> None:
        """Set the live weights to the merge at `multiplier` (in place, no allocation per tensor)."""
        import torch

        m = float(multiplier)
        with torch.no_grad():
            for key, param in self._params.items():
                base = self._base[key]
                other = self._other.get(key)
                if other is not None:
                    if self.method == "add-difference":
                        add_difference(base, other, m, out=param.data)
                    else:
                        weighted_sum(base, other, m, out=param.data)
                    if key in self._lora:
                        param.data.add_(self._lora[key])
                elif key in self._lora:
                    if self._other:  # a B merge drives M; LoRAs stay at their own scale
                        torch.add(base, self._lora[key], out=param.data)
                    else:
                        torch.add(base, self._lora[key], alpha=m, out=param.data)
        self.multiplier = m

    def restore(self) -> None:
        """Put model A's weights back."""
        import torch

        with torch.no_grad():
            for key, param in self._params.items():
                param.data.copy_(self._base[key])
        self.multiplier = None
