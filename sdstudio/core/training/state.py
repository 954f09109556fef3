"""Checkpoints: the LoRA weights in diffusers keys, plus what an exact resume needs.

    step-NNNNNN/pytorch_lora_weights.safetensors   loads with diffusers' load_lora_weights
    step-NNNNNN/state/lora_peft.safetensors        adapter tensors as peft names them (fp32)
    step-NNNNNN/state/optimizer.pt, scheduler.pt   torch.save of state dicts (read weights_only)
    step-NNNNNN/state/trainer.json                 step, micro-batch counter

A checkpoint is written to `step-NNNNNN.tmp/` and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sdstudio.core.runs import LORA_WEIGHTS_NAME, CheckpointRecord, RunDir

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def lora_config(rank: int, alpha: float, targets: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets)


def _adapter_metadata(model: Any) -> dict[str, Any] | None:
    cfg = getattr(model, "peft_config", {}).get("default")
    if cfg is None:
        return None
    data = cfg.to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in data.items()}


def save_checkpoint(run: RunDir, step: int, unet: Any, text_encoder: Any | None, optimizer: Any, scheduler: Any,
                    trainer_state: dict[str, Any], scaler: Any = None, text_encoder_2: Any | None = None) -> CheckpointRecord:
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    final = run.checkpoint_path(step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "state").mkdir(parents=True)
    unet_peft = get_peft_model_state_dict(unet)
    te_peft = get_peft_model_state_dict(text_encoder) if text_encoder is not None else None
    te2_peft = get_peft_model_state_dict(text_encoder_2) if text_encoder_2 is not None else None
    extra = {}  # [sdxl hook] SDXL's second text encoder
    if te2_peft:
        extra = {"text_encoder_2_lora_layers": convert_state_dict_to_diffusers(te2_peft),
                 "text_encoder_2_lora_adapter_metadata": _adapter_metadata(text_encoder_2)}
    pipeline_class = StableDiffusionXLPipeline if text_encoder_2 is not None or _is_sdxl_unet(unet) else StableDiffusionPipeline
    pipeline_class.save_lora_weights(
        tmp,
        unet_lora_layers=convert_state_dict_to_diffusers(unet_peft),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(te_peft) if te_peft else None,
        unet_lora_adapter_metadata=_adapter_metadata(unet),
        text_encoder_lora_adapter_metadata=_adapter_metadata(text_encoder) if te_peft else None,
        weight_name=LORA_WEIGHTS_NAME,
        safe_serialization=True,
        **extra,
    )
    peft_tensors = {f"unet.{k}": v.detach().float().cpu().contiguous() for k, v in unet_peft.items()}
    if te_peft:
        peft_tensors.update({f"text_encoder.{k}": v.detach().float().cpu().contiguous() for k, v in te_peft.items()})
    if te2_peft:
        peft_tensors.update({f"text_encoder_2.{k}": v.detach().float().cpu().contiguous() for k, v in te2_peft.items()})
    save_file(peft_tensors, str(tmp / "state" / "lora_peft.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "state" / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "state" / "scheduler.pt")
    if scaler is not None:
        torch.save(scaler.state_dict(), tmp / "state" / "scaler.pt")
    (tmp / "state" / "trainer.json").write_text(json.dumps({**trainer_state, "step": step}, indent=2))
    for path in tmp.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return CheckpointRecord(step, final)


def _is_sdxl_unet(unet: Any) -> bool:
    return getattr(unet.config, "addition_embed_type", None) == "text_time"


def load_checkpoint(ckpt: CheckpointRecord, unet: Any, text_encoder: Any | None, optimizer: Any, scheduler: Any,
                    scaler: Any = None, text_encoder_2: Any | None = None) -> dict[str, Any]:
    """Restore adapters, optimizer, LR scheduler (and scaler); returns trainer.json."""
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = ckpt.state_dir
    tensors = load_file(str(state / "lora_peft.safetensors"))
    unet_sd = {k[len("unet."):]: v for k, v in tensors.items() if k.startswith("unet.")}
    te_sd = {k[len("text_encoder."):]: v for k, v in tensors.items() if k.startswith("text_encoder.")}
    _set_exact(set_peft_model_state_dict, unet, unet_sd)
    if text_encoder is not None and te_sd:
        _set_exact(set_peft_model_state_dict, text_encoder, te_sd)
    te2_sd = {k[len("text_encoder_2."):]: v for k, v in tensors.items() if k.startswith("text_encoder_2.")}
    if text_encoder_2 is not None and te2_sd:  # [sdxl hook]
        _set_exact(set_peft_model_state_dict, text_encoder_2, te2_sd)
    optimizer.load_state_dict(torch.load(state / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(state / "scheduler.pt", map_location="cpu", weights_only=True))
    if scaler is not None and (state / "scaler.pt").exists():
        scaler.load_state_dict(torch.load(state / "scaler.pt", map_location="cpu", weights_only=True))
    return json.loads((state / "trainer.json").read_text())


def _set_exact(setter: Any, model: Any, sd: dict[str, Any]) -> None:
    result = setter(model, sd)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise RuntimeError(f"checkpoint does not match the model: unexpected keys {unexpected[:3]}")


def has_resume_state(path: Path) -> bool:
    return (path / "state" / "trainer.json").exists()
