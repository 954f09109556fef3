"""Export a training checkpoint as the kohya `.safetensors` that A1111 and ComfyUI load.

The weights keep their true alpha (the checkpoint's adapter metadata, else run.toml), and the
header carries kohya's `ss_*` training metadata plus the SAI `modelspec.*` keys, read from the
run's run.toml, so a UI can show what the LoRA was trained on.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdstudio import __version__
from sdstudio.core.errors import SdstudioError
from sdstudio.core.filetypes import IMAGE_SUFFIXES
from sdstudio.core.io.hashing import tensors_sha256
from sdstudio.core.lora.formats import LoraWeights, read_lora_file, to_kohya
from sdstudio.core.progress import Progress
from sdstudio.core.runs.run_dir import LORA_WEIGHTS_NAME, CheckpointRecord, RunDir

DTYPES = ("fp16", "fp32", "bf16")


def resolve_checkpoint(path: str | os.PathLike[str], step: int | None = None) -> tuple[RunDir | None, CheckpointRecord]:
    """A run folder (+ step, default latest), a checkpoint folder or its weights file -> (run, checkpoint)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".safetensors":
        p = p.parent
    run = RunDir(p)
    if run.exists():
        try:
            return run, run.checkpoint(step)
        except FileNotFoundError as exc:
            raise SdstudioError(str(exc)) from None
    if (p / LORA_WEIGHTS_NAME).is_file():
        if step is not None:
            raise SdstudioError(f"{p}: --step applies to a run folder; this is one checkpoint already")
        parent = RunDir(p.parent.parent)
        digits = p.name.removeprefix("step-")
        return (parent if parent.exists() else None), CheckpointRecord(int(digits) if digits.isdigit() else 0, p)
    raise SdstudioError(f"{p}: neither a run folder (no run.toml) nor a checkpoint folder (no {LORA_WEIGHTS_NAME})")


def _torch_dtype(dtype: str) -> Any:
    import torch

    table = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}
    if dtype not in table:
        raise SdstudioError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return table[dtype]


def _count_images(folder: str | None) -> int | None:
    if not folder or not Path(folder).is_dir():
        return None
    return sum(1 for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)


def base_identity(meta: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, str]:
    """Base model name/hash/family from run.toml's [sdstudio.base_model] table (the trainer's
    `model_identity`); a checkpoint without its run falls back to the config's model name."""
    base = meta.get("base_model")
    ident: dict[str, Any] = dict(base) if isinstance(base, Mapping) else {}
    ident.setdefault("name", str(cfg.get("pretrained_model_name_or_path", "unknown")))
    ident.setdefault("family", "sd1")
    return {k: str(v) for k, v in ident.items()}


def architecture(family: str, prediction_type: str | None) -> tuple[str, str | None]:
    """(modelspec architecture, modelspec prediction type "epsilon" | "v") from the base model's
    prediction type as run.toml recorded it. Runs from before it was recorded: SD 1.x and SDXL
    say epsilon (their standard); for SD 2.x, where both exist, nothing is claimed."""
    if prediction_type is None and family != "sd2":
        prediction_type = "epsilon"
    spec = {"epsilon": "epsilon", "v_prediction": "v"}.get(prediction_type or "")
    if family == "sdxl":
        return "stable-diffusion-xl-v1-base/lora", spec
    if family == "sd2":
        arch = {"v": "stable-diffusion-v2-768-v", "epsilon": "stable-diffusion-v2-512"}.get(spec or "", "stable-diffusion-v2")
        return arch + "/lora", spec
    return "stable-diffusion-v1/lora", spec


def export_metadata(weights: LoraWeights, run: RunDir | None, step: int, title: str, hash_sha256: str) -> dict[str, str]:
    """kohya `ss_*` and SAI `modelspec.*` header entries (all strings, as safetensors requires)."""
    cfg = run.config() if run else {}
    meta = run.meta() if run else {}
    ranks = sorted(weights.ranks())
    alphas = sorted(weights.alphas())
    rank = ranks[0] if len(ranks) == 1 else max(ranks)
    alpha = alphas[0] if len(alphas) == 1 else max(alphas)
    resolution = int(cfg.get("resolution", 512))
    base = base_identity(meta, cfg)
    arch, prediction = architecture(base["family"], base.get("prediction_type"))
    data_dir = cfg.get("instance_data_dir") or cfg.get("train_data_dir")
    n_images = meta.get("dataset_images")
    if n_images is None:
        n_images = _count_images(data_dir)
    dataset_dirs = {Path(data_dir).name: {"n_repeats": 1, "img_count": n_images or 0}} if data_dir else {}
    unet_only = not {"text_encoder", "text_encoder_2"} & set(weights.components())
    version = {"sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}.get(base["family"], "sd_v1")  # kohya's names
    ss: dict[str, Any] = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": rank,
        "ss_network_alpha": alpha,
        "ss_network_args": json.dumps({"sdstudio_ranks": ranks, "sdstudio_alphas": alphas}) if len(ranks) + len(alphas) > 2 else None,
        "ss_network_train_unet_only": unet_only,
        "ss_base_model_version": version,
        "ss_v2": base["family"] == "sd2",
        "ss_v_parameterization": None if prediction is None else prediction == "v",
        "ss_sd_model_name": base["name"],
        "ss_new_sd_model_hash": base.get("sha256"),
        "ss_sd_model_hash": base.get("short_hash"),
        "ss_resolution": f"({resolution}, {resolution})",
        "ss_enable_bucket": bool(cfg.get("enable_bucket", False)),
        "ss_min_bucket_reso": (cfg.get("min_bucket_reso") or resolution // 2) if cfg.get("enable_bucket") else None,
        "ss_max_bucket_reso": (cfg.get("max_bucket_reso") or resolution * 2) if cfg.get("enable_bucket") else None,
        "ss_steps": step,
        "ss_max_train_steps": cfg.get("max_train_steps"),
        "ss_learning_rate": cfg.get("learning_rate"),
        "ss_unet_lr": cfg.get("learning_rate"),
        "ss_text_encoder_lr": cfg.get("learning_rate") if not unet_only else None,
        "ss_lr_scheduler": cfg.get("lr_scheduler"),
        "ss_lr_warmup_steps": cfg.get("lr_warmup_steps"),
        "ss_batch_size_per_device": cfg.get("train_batch_size"),
        "ss_gradient_accumulation_steps": cfg.get("gradient_accumulation_steps"),
        "ss_mixed_precision": cfg.get("mixed_precision"),
        "ss_seed": cfg.get("seed"),
        "ss_min_snr_gamma": cfg.get("snr_gamma"),
        "ss_noise_offset": cfg.get("noise_offset"),
        "ss_num_train_images": n_images,
        "ss_dataset_dirs": json.dumps(dataset_dirs) if dataset_dirs else None,
        "ss_output_name": title,
        "ss_training_comment": f"trained with sdstudio {meta.get('version', __version__)}",
        "ss_sdstudio_version": meta.get("version", __version__),
    }
    spec: dict[str, Any] = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": arch,
        "modelspec.implementation": "diffusers",
        "modelspec.title": title,
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.prediction_type": prediction,
        "modelspec.hash_sha256": hash_sha256,
        "modelspec.description": f"LoRA rank {rank}, alpha {alpha:g}, {step} steps on {base['name']} (sdstudio)",
        "modelspec.trigger_phrase": cfg.get("instance_prompt"),
    }
    return {k: str(v) for k, v in {**ss, **spec}.items() if v is not None}


def default_export_path(run: RunDir | None, ckpt: CheckpointRecord) -> Path:
    if run is not None:
        return run.exports_dir / f"{run.name}-step{ckpt.step}.safetensors"
    return ckpt.path / f"{ckpt.path.name}-kohya.safetensors"


def export_checkpoint(run_or_ckpt_dir: str | os.PathLike[str], step: int | None = None,
                      out: str | os.PathLike[str] | None = None, dtype: str = "fp16",
                      overwrite: bool = False) -> Path:
    """Write a run checkpoint as kohya `.safetensors` (atomically) and return its path.

    Default output: `RUN/exports/<run>-step<N>.safetensors`. A file that exists, there or at `out`,
    is replaced only with `overwrite` (it may be a copy someone uses, or another dtype).
    """
    from sdstudio.core.io.atomic import save_safetensors

    torch_dtype = _torch_dtype(dtype)
    run, ckpt = resolve_checkpoint(run_or_ckpt_dir, step)
    progress = Progress("export", 3)
    progress.update(0, detail="reading")
    default_alpha = None
    if run is not None:
        cfg = run.config()
        if cfg.get("lora_alpha") is not None or cfg.get("rank") is not None:
            default_alpha = float(cfg.get("lora_alpha") or cfg["rank"])
    weights = read_lora_file(ckpt.weights, default_alpha=default_alpha)
    family = base_identity(run.meta() if run else {}, run.config() if run else {})["family"]
    progress.update(1, detail="converting")
    tensors = to_kohya(weights, torch_dtype, sdxl=family == "sdxl" or None)
    target = Path(out) if out else default_export_path(run, ckpt)
    if target.suffix != ".safetensors":
        raise SdstudioError(f"{target}: the export is a .safetensors file; give -o a name ending in .safetensors")
    if target.exists() and not overwrite:
        raise SdstudioError(f"{target}: already exists (pass --overwrite to replace it)")
    title = target.stem
    progress.update(2, detail="writing")
    metadata = export_metadata(weights, run, ckpt.step, title, tensors_sha256(tensors))
    save_safetensors(tensors, target, metadata=metadata)
    progress.finish()
    return target
