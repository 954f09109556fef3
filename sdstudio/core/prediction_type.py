"""What a base model predicts, noise (`epsilon`) or `v_prediction`, and the evidence for it.

A diffusers folder or hub model says it in its scheduler config. A single .safetensors/.ckpt
file does not: diffusers' `from_single_file` takes the prediction type from the config repo it
picks by family (every SD 2 file gets SD 2.1-768's v-prediction; its legacy path tells SD 2.0-base
only by `global_step == 875000`). sdstudio decides from evidence, in this order:

1. what the file states: A1111's config beside the checkpoint (`NAME.yaml`, which A1111 loads
   in place of its guess: `parameterization: "v"` means v, a config without it the LDM default,
   epsilon); the safetensors header's `modelspec.prediction_type` or kohya's `ss_v_parameterization`;
   a `v_pred` key (ComfyUI's marker of v-prediction SD 1.x/SDXL checkpoints);
2. for SD 2.x files that state nothing, A1111's test (`is_using_v_parameterization_for_sd2`): one
   UNet pass on a constant latent at the last timestep; a v model's output lies far below the input
   (mean difference < -1), an epsilon model's near it;
3. otherwise the config's scheduler (epsilon for SD 1.x and SDXL).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

EPSILON, V_PREDICTION = "epsilon", "v_prediction"
_YAML_V = re.compile(r"^\s*parameterization\s*:\s*[\"']?v[\"']?\s*(#.*)?$", re.MULTILINE)
_TRUE = ("1", "true", "yes")


def stated(path: str | Path) -> tuple[str, str] | None:
    """(prediction type, where the file states it) for a single checkpoint file, or None."""
    path = Path(path)
    for yaml in (path.with_suffix(".yaml"), path.with_suffix(".yml")):
        if yaml.is_file():
            text = yaml.read_text(encoding="utf-8", errors="replace")
            if _YAML_V.search(text):
                return V_PREDICTION, f"{yaml.name}: parameterization \"v\""
            return EPSILON, f"{yaml.name}: no v parameterization"
    if path.suffix.lower() != ".safetensors":
        return None
    from sdstudio.core.io.safetensors_io import read_file_header

    keys, metadata, _ = read_file_header(path)
    spec = str(metadata.get("modelspec.prediction_type", "")).strip().lower()
    if spec in ("v", "v_prediction", "v-prediction"):
        return V_PREDICTION, "header modelspec.prediction_type"
    if spec in ("epsilon", "eps"):
        return EPSILON, "header modelspec.prediction_type"
    kohya = str(metadata.get("ss_v_parameterization", "")).strip().lower()
    if kohya:
        return (V_PREDICTION if kohya in _TRUE else EPSILON), "header ss_v_parameterization"
    if "v_pred" in keys:
        return V_PREDICTION, "key v_pred"
    return None


def probe_unet(unet: Any) -> str:
    """A1111's SD 2.x test, on a loaded diffusers UNet (the same function as the LDM UNet A1111
    builds): constant latent 0.5, timestep 999, constant text 0.5; v when mean(out - x) < -1."""
    import torch

    param = next(unet.parameters())
    x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, dtype=param.dtype, device=param.device)
    context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, dtype=param.dtype, device=param.device)
    with torch.no_grad():
        out = unet(x, torch.tensor([999], device=param.device), encoder_hidden_states=context).sample
    return V_PREDICTION if float((out.float() - x.float()).mean()) < -1 else EPSILON


def decide(path: str | Path, family: str, unet: Any) -> tuple[str | None, str]:
    """(prediction type, evidence) for a single file whose UNet is loaded; None: keep the config's."""
    found = stated(path)
    if found is not None:
        return found
    if family == "sd2":
        return probe_unet(unet), "A1111's SD 2 test (one UNet pass at timestep 999)"
    return None, "the config's scheduler"


def with_prediction_type(scheduler: Any, prediction_type: str) -> Any:
    """The scheduler, or a copy of it predicting `prediction_type`."""
    if scheduler.config.get("prediction_type") == prediction_type:
        return scheduler
    return type(scheduler).from_config(scheduler.config, prediction_type=prediction_type)
