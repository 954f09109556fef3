"""The checks a training config must pass before any model loads: impossible values and
combinations, each refused with the field to change (kept apart from the field list in config.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdstudio.core.errors import ConfigError

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
MIXED_PRECISION = ("no", "fp16", "bf16")
REPORT_TO = ("none", "tensorboard", "wandb")
METHODS = ("auto", "text2image", "dreambooth")
TRAINING_METHODS = ("lora", "full")  # what trains: LoRA adapters, or every weight of the UNet (and text encoders)
OPTIMIZERS = ("adamw", "adamw8bit", "adafactor")
MASTER_WEIGHTS = ("fp32", "bf16")  # full fine-tuning: fp32 master weights, or bf16 weights with stochastic rounding
SCORERS = ("demo", "clip", "dino")  # the image scorers by name; training/scorers.py maps each to its class


def _need(cond: bool, name: str, message: str, source: str | None) -> None:
    if not cond:
        raise ConfigError(name, message, source)


def check(cfg: Any, source: str | None = None) -> None:
    """`cfg` is a config.TrainConfig (not imported here: config.py imports this module)."""
    """Impossible values and combinations, each naming the field to change."""
    _need(cfg.method in METHODS, "method", f"must be one of {', '.join(METHODS)}", source)
    _need(cfg.training_method in TRAINING_METHODS, "training_method",
          f"must be one of {', '.join(TRAINING_METHODS)}, got {cfg.training_method!r}", source)
    _need(cfg.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}", source)
    _need(not (cfg.use_8bit_adam and cfg.optimizer not in ("adamw", "adamw8bit")), "use_8bit_adam",
          f"asks for adamw8bit but optimizer = \"{cfg.optimizer}\"; set optimizer = \"adamw8bit\" and drop use_8bit_adam", source)
    _need(cfg.master_weights in MASTER_WEIGHTS, "master_weights",
          f"must be one of {', '.join(MASTER_WEIGHTS)}, got {cfg.master_weights!r}", source)
    _need(cfg.text_encoder_lr is None or cfg.text_encoder_lr > 0, "text_encoder_lr", "must be positive", source)
    _need(0.0 < cfg.ema_decay < 1.0, "ema_decay", f"must be between 0 and 1 (e.g. 0.9999), got {cfg.ema_decay}", source)
    _need(cfg.ema_update_every >= 1, "ema_update_every", f"must be at least 1, got {cfg.ema_update_every}", source)
    for name in ("use_ema", "fused_backward"):
        _need(cfg.full or not getattr(cfg, name), name, 'is a full fine-tuning option: set training_method = "full"', source)
    _need(cfg.full or cfg.master_weights == "fp32", "master_weights",
          'is a full fine-tuning option (LoRA adapters always train in fp32): set training_method = "full"', source)
    if cfg.fused_backward:  # what stepping each parameter inside the backward cannot do (core/full/fused_backward.py)
        _need(cfg.gradient_accumulation_steps == 1, "gradient_accumulation_steps",
              f"must be 1 with fused_backward (each gradient is freed as soon as its parameter steps, so nothing is "
              f"left to accumulate), got {cfg.gradient_accumulation_steps}; raise train_batch_size instead, or set "
              "fused_backward = false", source)
        _need(cfg.mixed_precision != "fp16", "mixed_precision",
              "\"fp16\" cannot work with fused_backward (loss scaling must see every gradient before any step): "
              "use \"bf16\" or \"no\", or set fused_backward = false", source)
    _need(cfg.master_weights != "bf16" or cfg.mixed_precision == "bf16", "master_weights",
          f"\"bf16\" (bf16 weights with stochastic rounding) needs mixed_precision = \"bf16\", got "
          f"\"{cfg.mixed_precision}\"; or keep master_weights = \"fp32\"", source)
    _need(0.0 <= cfg.unmasked_weight <= 1.0, "unmasked_weight",
          f"must be between 0 (background ignored) and 1 (no masking), got {cfg.unmasked_weight}", source)
    if cfg.mask_dir:
        _need(Path(cfg.mask_dir).is_dir(), "mask_dir", f"folder not found: {cfg.mask_dir}", source)
        for name in ("train_data_dir", "instance_data_dir"):
            data = getattr(cfg, name)
            _need(not (data and Path(cfg.mask_dir).resolve().is_relative_to(Path(data).resolve())), "mask_dir",
                  f"is inside {name} ({data}): its masks would be read as training images; move the mask folder "
                  "beside the dataset", source)
    method = cfg.resolved_method
    if method == "text2image":
        _need(bool(cfg.train_data_dir), "train_data_dir",
              "text-to-image training needs a captioned image folder (or set instance_data_dir for DreamBooth)", source)
        _need(not cfg.with_prior_preservation, "with_prior_preservation",
              "prior preservation is a DreamBooth option: set instance_data_dir and instance_prompt", source)
    else:
        _need(bool(cfg.instance_data_dir), "instance_data_dir", "DreamBooth needs a folder of instance images", source)
        _need(bool(cfg.instance_prompt), "instance_prompt", "DreamBooth needs an instance prompt, e.g. 'a photo of sks cat'", source)
    if cfg.with_prior_preservation:
        _need(bool(cfg.class_prompt), "class_prompt", "prior preservation needs a class prompt, e.g. 'a photo of a cat'", source)
        _need(bool(cfg.class_data_dir), "class_data_dir", "prior preservation needs a folder for class images", source)
        _need(cfg.num_class_images >= 1, "num_class_images", "must be at least 1", source)
        _need(cfg.prior_loss_weight >= 0, "prior_loss_weight", "must be 0 or more", source)
    _need(cfg.resolution >= 8 and cfg.resolution % 8 == 0, "resolution", f"must be a positive multiple of 8, got {cfg.resolution}", source)
    for name in ("num_validation_images", "validation_steps"):  # 0 turns sampling off
        _need(getattr(cfg, name) >= 0, name, f"must be 0 (no samples) or more, got {getattr(cfg, name)}", source)
    if cfg.enable_bucket:
        step = cfg.bucket_reso_steps
        _need(step >= 8 and step % 8 == 0, "bucket_reso_steps", f"must be a positive multiple of 8, got {step}", source)
        _need(cfg.resolution % step == 0, "resolution",
              f"with enable_bucket, must be a multiple of bucket_reso_steps ({step}), got {cfg.resolution}", source)
        lo = cfg.min_bucket_reso if cfg.min_bucket_reso is not None else cfg.resolution // 2
        hi = cfg.max_bucket_reso if cfg.max_bucket_reso is not None else cfg.resolution * 2
        _need(lo <= cfg.resolution, "min_bucket_reso", f"must be at most resolution ({cfg.resolution}), got {lo}", source)
        _need(hi >= cfg.resolution, "max_bucket_reso", f"must be at least resolution ({cfg.resolution}), got {hi}", source)
    _need(cfg.max_upscale >= 1.0, "max_upscale", f"must be 1 or more (1 = never upscale), got {cfg.max_upscale}", source)
    for name in ("train_batch_size", "gradient_accumulation_steps", "max_train_steps", "rank",
                 "checkpointing_steps", "validation_num_inference_steps", "sample_batch_size",
                 "logging_steps"):
        _need(getattr(cfg, name) >= 1, name, f"must be at least 1, got {getattr(cfg, name)}", source)
    _need(cfg.learning_rate > 0, "learning_rate", f"must be positive, got {cfg.learning_rate}", source)
    _need(cfg.lr_warmup_steps >= 0, "lr_warmup_steps", "must be 0 or more", source)
    _need(cfg.max_grad_norm > 0, "max_grad_norm", "must be positive", source)
    _need(cfg.lora_alpha is None or cfg.lora_alpha > 0, "lora_alpha", "must be positive", source)
    _need(cfg.snr_gamma is None or cfg.snr_gamma > 0, "snr_gamma", "must be positive", source)
    _need(cfg.checkpoints_total_limit is None or cfg.checkpoints_total_limit >= 1, "checkpoints_total_limit",
          "must be at least 1 (or left out to keep every checkpoint)", source)
    _need(0.0 <= cfg.validation_split < 1.0, "validation_split",
          f"must be at least 0 and below 1 (a share of the dataset), got {cfg.validation_split}", source)
    _need(not (cfg.validation_split and cfg.validation_data_dir), "validation_split",
          "give either validation_split or validation_data_dir, not both", source)
    _need(cfg.validation_loss_timesteps >= 1, "validation_loss_timesteps", "must be at least 1", source)
    _need(cfg.validation_loss_max_share > 0, "validation_loss_max_share",
          f"must be above 0 (a share of the training time, e.g. 0.1), got {cfg.validation_loss_max_share}", source)
    for name in cfg.scorers:
        _need(name in SCORERS, "scorers", f"unknown scorer {name!r}: choose from {', '.join(SCORERS)}", source)
    for name in ("recommend_subject_tolerance", "recommend_loss_tolerance"):
        _need(0.0 <= getattr(cfg, name) <= 1.0, name, f"must be between 0 and 1, got {getattr(cfg, name)}", source)
    if cfg.validation_data_dir:
        _need(Path(cfg.validation_data_dir).is_dir(), "validation_data_dir", f"folder not found: {cfg.validation_data_dir}", source)
    _need(cfg.lr_scheduler in LR_SCHEDULERS, "lr_scheduler", f"must be one of {', '.join(LR_SCHEDULERS)}", source)
    _need(cfg.mixed_precision in MIXED_PRECISION, "mixed_precision", f"must be one of {', '.join(MIXED_PRECISION)}", source)
    _need(cfg.report_to in REPORT_TO, "report_to", f"must be one of {', '.join(REPORT_TO)}", source)
    if cfg.report_to != "none":
        import importlib.util

        pkg = cfg.report_to
        _need(importlib.util.find_spec(pkg) is not None, "report_to",
              f"'{pkg}' needs the '{pkg}' package (pip install {pkg}) or report_to = \"none\"", source)
    if cfg.resolved_optimizer == "adamw8bit":
        import importlib.util

        from sdstudio.core.full.optimizers import bitsandbytes_missing_message

        name = "use_8bit_adam" if cfg.use_8bit_adam else "optimizer"
        _need(importlib.util.find_spec("bitsandbytes") is not None, name, bitsandbytes_missing_message(name), source)
    for name in ("train_data_dir", "instance_data_dir"):
        value = getattr(cfg, name)
        if value and (method == "text2image") == (name == "train_data_dir"):
            _need(Path(value).is_dir(), name, f"folder not found: {value}", source)
