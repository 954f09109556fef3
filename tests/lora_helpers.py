"""LoRA checkpoints made the way the trainer makes them (peft adapters, `save_lora_weights`).

Shared by the LoRA/generate tests and `benchmarks/lora_export.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdstudio.core.runs import RunDir

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
SD15_CONFIG = Path("/work/shared/sd15-config")


def add_adapters(pipe: Any, rank: int = 4, unet_alpha: float = 8.0, text_alpha: float | None = 2.0,
                 seed: int = 0) -> tuple[Any, Any]:
    """Add peft LoRA adapters (alpha != rank) with random non-zero B, as if trained."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    unet_cfg = LoraConfig(r=rank, lora_alpha=unet_alpha, init_lora_weights="gaussian", target_modules=UNET_TARGETS)
    pipe.unet.add_adapter(unet_cfg)
    text_cfg = None
    if text_alpha is not None:
        text_cfg = LoraConfig(r=rank, lora_alpha=text_alpha, init_lora_weights="gaussian", target_modules=TEXT_TARGETS)
        # transformers' own add_adapter wants peft >= 0.22; peft's injection is the same adapter
        inject_adapter_in_model(text_cfg, pipe.text_encoder)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in (pipe.unet, pipe.text_encoder):
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return unet_cfg, text_cfg


def _meta(cfg: Any) -> dict[str, Any] | None:
    if cfg is None:
        return None
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.to_dict().items()}


def save_checkpoint(pipe: Any, run: RunDir, step: int, unet_cfg: Any, text_cfg: Any) -> Path:
    """`checkpoints/step-NNNNNN/pytorch_lora_weights.safetensors`, as the trainer writes it."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    unet_sd = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    text_sd = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder)) if text_cfg else None
    folder = run.checkpoint_path(step)
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=unet_sd, text_encoder_lora_layers=text_sd,
        unet_lora_adapter_metadata=_meta(unet_cfg), text_encoder_lora_adapter_metadata=_meta(text_cfg),
        safe_serialization=True)
    return folder


def write_run_toml(run: RunDir, model: str, rank: int, alpha: float, steps: int, data_dir: str | None = None,
                   train_text_encoder: bool = True, resolution: int = 32) -> None:
    config = {"pretrained_model_name_or_path": model, "method": "dreambooth", "instance_data_dir": data_dir,
              "instance_prompt": "a photo of sks dog", "resolution": resolution, "max_train_steps": steps,
              "learning_rate": 1e-4, "lr_scheduler": "constant", "rank": rank, "lora_alpha": alpha,
              "train_text_encoder": train_text_encoder, "train_batch_size": 1, "seed": 0}
    meta = {"version": "0.1.0", "dataset_images": 5,
            "base_model": {"name": Path(model).name, "sha256": "ab" * 32, "short_hash": "abababab12", "family": "sd1"}}
    run.write_config(config, meta)


def sd15_lora_checkpoint(run: RunDir, step: int = 10, rank: int = 4, alpha: float = 8.0,
                         unet_targets: list[str] = UNET_TARGETS, text_targets: list[str] | None = TEXT_TARGETS) -> Path:
    """A full SD 1.5-size LoRA checkpoint: peft picks the modules on meta-device models built from
    /work/shared/sd15-config; tensors of those shapes are random (no base weights needed)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextConfig, CLIPTextModel

    gen = torch.Generator().manual_seed(0)

    def realise(model: Any, targets: list[str]) -> dict[str, Any]:
        cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets)
        inject_adapter_in_model(cfg, model)
        sd = get_peft_model_state_dict(model)
        return {k: torch.randn(v.shape, generator=gen) * 0.01 for k, v in sd.items()}, cfg

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads((SD15_CONFIG / "unet" / "config.json").read_text()))
        text = CLIPTextModel(CLIPTextConfig(**json.loads((SD15_CONFIG / "text_encoder" / "config.json").read_text())))
    unet_sd, unet_cfg = realise(unet, unet_targets)
    text_sd, text_cfg = realise(text, text_targets) if text_targets else (None, None)
    folder = run.checkpoint_path(step)
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=convert_state_dict_to_diffusers(unet_sd),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(text_sd) if text_sd else None,
        unet_lora_adapter_metadata=_meta(unet_cfg), text_encoder_lora_adapter_metadata=_meta(text_cfg),
        safe_serialization=True)
    write_run_toml(run, "stable-diffusion-v1-5", rank, alpha, step, resolution=512,
                   train_text_encoder=text_targets is not None)
    return folder


def sd15_ldm_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of the SD 1.5 single-file (LDM) layout -> its shape, from the configs alone:
    meta-device diffusers models, renamed by `ldm_layout` (same shapes for UNet/CLIP tensors)."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sdstudio.core.io.ldm_layout import LdmLayout

    unet_cfg = json.loads((SD15_CONFIG / "unet" / "config.json").read_text())
    text_cfg = json.loads((SD15_CONFIG / "text_encoder" / "config.json").read_text())
    vae_cfg = json.loads((SD15_CONFIG / "vae" / "config.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_cfg)
        text = CLIPTextModel(CLIPTextConfig(**text_cfg))
    shapes = {"unet": {k: tuple(v.shape) for k, v in unet.state_dict().items()},
              "text_encoder": {k: tuple(v.shape) for k, v in text.state_dict().items()}}
    layout = LdmLayout(unet_cfg, vae_cfg, "sd1", text_cfg["num_hidden_layers"])
    plan = layout.plan_to_ldm({c: list(s) for c, s in shapes.items()})
    return {ldm: shapes[parts[0].component][parts[0].key] for ldm, parts in plan.items() if len(parts) == 1}
