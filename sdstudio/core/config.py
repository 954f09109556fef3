"""Training configs: field names are the diffusers example scripts' flags.

A config is refused before any model loads when a field is unknown, of the wrong type
or impossible; the error names the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.config_checks import (LR_SCHEDULERS, MASTER_WEIGHTS, METHODS, MIXED_PRECISION, OPTIMIZERS,  # noqa: F401
                                         REPORT_TO, SCORERS, TRAINING_METHODS, check)
from sdstudio.core.errors import ConfigError

# Fields holding filesystem paths: relative values in a TOML file are taken from the file's folder.
PATH_FIELDS = ("train_data_dir", "instance_data_dir", "class_data_dir", "output_dir", "validation_data_dir", "mask_dir")


@dataclass
class TrainConfig:
    # model
    pretrained_model_name_or_path: str = "demo"
    pretrained_vae_model_name_or_path: str | None = None  # e.g. SDXL's fp16-fix VAE (it runs in fp32 anyway)
    method: str = "auto"
    # text-to-image data
    train_data_dir: str | None = None
    caption_column: str = "text"
    # DreamBooth data
    instance_data_dir: str | None = None
    instance_prompt: str | None = None
    class_data_dir: str | None = None
    class_prompt: str | None = None
    with_prior_preservation: bool = False
    prior_loss_weight: float = 1.0
    num_class_images: int = 100
    sample_batch_size: int = 4
    # preprocessing
    resolution: int = 512
    center_crop: bool = False
    random_flip: bool = False
    cache_latents: bool = True  # cache VAE latents and text embeddings while they cannot change
    # aspect-ratio buckets (kohya's names): about resolution**2 pixels, sides in steps of bucket_reso_steps
    enable_bucket: bool = False
    bucket_reso_steps: int = 64
    min_bucket_reso: int | None = None  # default resolution / 2
    max_bucket_reso: int | None = None  # default resolution * 2
    max_upscale: float = 2.0  # an image needing more to cover its bucket is skipped, with the reason
    # masks (white = the subject): the image's alpha, else NAME-mask.png beside it, else mask_dir/NAME.png
    mask_dir: str | None = None
    masked_loss: bool = False  # weight the per-pixel loss by the mask (class images stay unmasked)
    unmasked_weight: float = 0.0  # the background's loss weight with masked_loss (0: ignored, 1: no masking)
    # optimisation
    train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_train_steps: int = 500
    learning_rate: float = 1e-4
    scale_lr: bool = False
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    max_grad_norm: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    snr_gamma: float | None = None
    noise_offset: float = 0.0
    # what trains: "lora" (adapters) or "full" (every UNet weight, and the text encoders' with train_text_encoder)
    training_method: str = "lora"
    text_encoder_lr: float | None = None  # the text encoders' own learning rate (default: learning_rate)
    optimizer: str = "adamw"  # adamw | adamw8bit (bitsandbytes) | adafactor
    # full fine-tuning
    use_ema: bool = False  # keep an exponential moving average of the trained weights (exported by default)
    ema_decay: float = 0.9999
    ema_update_every: int = 1  # optimizer steps between EMA updates
    ema_on_cpu: bool = False  # hold the EMA in host memory (saves accelerator memory, costs a copy per update)
    fused_backward: bool = False  # step each parameter in its gradient hook and free the gradient at once
    master_weights: str = "fp32"  # fp32 master weights, or "bf16" weights updated with stochastic rounding
    # LoRA
    rank: int = 4
    lora_alpha: float | None = None
    train_text_encoder: bool = False
    # performance
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    # fold accumulation micro-batches into one pass, bf16 without autocast, fused AdamW and
    # channels_last on CUDA, frozen VAE/text encoder off the GPU once cached
    fast_path: bool = True
    torch_compile: bool = False
    use_8bit_adam: bool = False
    # checkpoints and validation
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = None
    validation_prompts: list[str] = field(default_factory=list)  # empty: the instance/class prompts or captions
    num_validation_images: int = 4  # 0: no validation samples
    validation_steps: int = 100  # 0: no validation samples
    validation_num_inference_steps: int = 25
    validation_guidance_scale: float = 7.5
    seed: int = 0
    # which checkpoint is best (training/validation_loss.py, scorers.py, recommend.py)
    validation_loss: bool = True  # a deterministic held-out loss at every checkpoint
    validation_split: float = 0.0  # share of the dataset held out of training for it
    validation_data_dir: str | None = None  # or a separate folder (captioned like the training data)
    validation_loss_timesteps: int = 8  # stratified across the noise schedule
    validation_loss_max_share: float = 0.1  # skip a checkpoint's (left pending) above this share of training time
    scorers: list[str] = field(default_factory=list)  # score each checkpoint's samples: demo, clip, dino
    clip_model: str = "openai/clip-vit-base-patch32"  # local folder or a model already in the HF cache
    dino_model: str = "facebook/dinov2-small"
    recommend_subject_tolerance: float = 0.10  # "learned the subject": within this share of the best checkpoint
    recommend_loss_tolerance: float = 0.10  # validation loss may rise this share above its minimum
    # output
    output_dir: str | None = None
    run_name: str | None = None
    report_to: str = "none"
    logging_steps: int = 1

    # derived
    @property
    def resolved_method(self) -> str:
        if self.method != "auto":
            return self.method
        return "dreambooth" if self.instance_data_dir else "text2image"

    @property
    def full(self) -> bool:
        """Full fine-tuning (every weight) rather than LoRA adapters."""
        return self.training_method == "full"

    @property
    def resolved_optimizer(self) -> str:
        """The optimizer by name; the older `use_8bit_adam = true` means adamw8bit."""
        return "adamw8bit" if self.use_8bit_adam and self.optimizer == "adamw" else self.optimizer

    @property
    def effective_alpha(self) -> float:
        return float(self.lora_alpha if self.lora_alpha is not None else self.rank)

    @property
    def images_per_step(self) -> int:
        return self.train_batch_size * self.gradient_accumulation_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def _base_types(hint: Any) -> tuple[tuple[type, ...], bool, bool]:
    """(accepted scalar types, optional?, list-of-str?) for a field's type hint."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        inner, _, is_list = _base_types(non_none[0])
        return inner, True, is_list
    if origin is list:
        return (str,), False, True
    return (hint,), False, False


def _coerce(name: str, value: Any, source: str | None) -> Any:
    """Check `value` against the field's type; ints are accepted for floats."""
    scalar, optional, is_list = _base_types(_HINTS[name])
    if value is None:
        if optional:
            return None
        raise ConfigError(name, "may not be empty", source)
    if is_list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(name, f"expected a list of strings, got {value!r}", source)
        return list(value)
    kind = scalar[0]
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(name, f"expected true or false, got {value!r}", source)
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(name, f"expected a whole number, got {value!r}", source)
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(name, f"expected a number, got {value!r}", source)
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(name, f"expected a string, got {value!r}", source)
    raise AssertionError(f"unhandled type for {name}")  # pragma: no cover


def parse_cli_value(name: str, text: str | None) -> Any:
    """Turn a `--field value` string into the field's type (TOML literal syntax accepted)."""
    if name not in FIELDS:
        raise ConfigError(name, _unknown_hint(name), "command line")
    scalar, optional, is_list = _base_types(_HINTS[name])
    if text is None:  # a bare flag
        if scalar[0] is bool:
            return True
        raise ConfigError(name, "needs a value", "command line")
    if optional and text.lower() in ("none", "null", ""):
        return None
    if is_list:
        if text.strip().startswith("["):
            try:
                return tomllib.loads(f"v = {text}")["v"]
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(name, f"cannot read {text!r} as a list: {exc}", "command line") from None
        return [text]
    kind = scalar[0]
    try:
        if kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        expected = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise ConfigError(name, f"expected {expected}, got {text!r}", "command line") from None
    return text


def _unknown_hint(name: str) -> str:
    close = difflib.get_close_matches(name, FIELDS, n=1)
    return "unknown field" + (f" (did you mean '{close[0]}'?)" if close else "")


def build_config(values: dict[str, Any], source: str | None = None, base_dir: Path | None = None) -> TrainConfig:
    """Validate raw values into a TrainConfig; relative paths resolve against `base_dir`."""
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name not in FIELDS:
            raise ConfigError(name, _unknown_hint(name), source)
        value = _coerce(name, value, source)
        if name in PATH_FIELDS and isinstance(value, str) and base_dir is not None:
            value = str((base_dir / os.path.expanduser(value)).resolve()) if not os.path.isabs(value) else value
        if (name in ("pretrained_model_name_or_path", "pretrained_vae_model_name_or_path") and base_dir is not None
                and isinstance(value, str) and value.startswith((".", "/", "~"))):
            value = str((base_dir / os.path.expanduser(value)).resolve())
        kwargs[name] = value
    cfg = TrainConfig(**kwargs)
    validate(cfg, source)
    return cfg


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError("config", f"file not found: {p}", str(p))
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"not valid TOML: {exc}", str(p)) from None


def load_config(path: str | os.PathLike[str] | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a TOML config (a file, or a shipped config's name) and apply command-line overrides
    (paths relative to the cwd)."""
    file_values: dict[str, Any] = {}
    source = None
    base_dir = None
    if path is not None:
        from sdstudio.core import shipped_configs

        path = shipped_configs.resolve_config_arg(path)  # a file, or a shipped config's name
        source = str(path)
        file_values = load_toml(path)
        file_values.pop("sdstudio", None)  # a run.toml's metadata table
        if shipped_configs.is_shipped(path):  # what the trainer writes goes to the home, never the package
            file_values = shipped_configs.rebase_written(file_values, path)
        base_dir = Path(path).resolve().parent
    # Resolve file paths against the file's folder first, then apply overrides against the cwd.
    cfg = build_config(file_values, source, base_dir) if file_values else TrainConfig()
    if overrides:
        merged = {**cfg.to_dict(), **overrides}
        merged = {k: v for k, v in merged.items() if v is not None or k in overrides}
        over_resolved = {}
        for k, v in overrides.items():
            if k in PATH_FIELDS and isinstance(v, str):
                v = str(Path(os.path.expanduser(v)).resolve())
            over_resolved[k] = v
        merged.update(over_resolved)
        cfg = build_config(merged, source or "command line")
    else:
        validate(cfg, source)
    return cfg


def validate(cfg: TrainConfig, source: str | None = None) -> None:
    """Impossible values and combinations, each naming the field to change (config_checks.py)."""
    check(cfg, source)


def save_toml(cfg: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write a config as TOML (atomically); None fields are left out. A shipped config or a file
    inside the Python installation is refused (PermissionError, as a read-only file would be)."""
    import errno

    from sdstudio.core.io import atomic
    from sdstudio.core.io.toml_text import dumps_toml
    from sdstudio.core.paths import inside_installation
    from sdstudio.core.shipped_configs import is_shipped

    if is_shipped(path) or inside_installation(Path(path)):
        raise PermissionError(errno.EACCES, "sdstudio does not write into its shipped configs or the Python "
                                            "installation; save under another name (e.g. in ~/sdstudio)", str(path))
    atomic.write_text(path, dumps_toml(cfg.to_dict()))
