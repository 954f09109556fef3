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

from sdstudio.core.errors import ConfigError

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
MIXED_PRECISION = ("no", "fp16", "bf16")
REPORT_TO = ("none", "tensorboard", "wandb")
METHODS = ("auto", "text2image", "dreambooth")
# Fields holding filesystem paths: relative values in a TOML file are taken from the file's folder.
PATH_FIELDS = ("train_data_dir", "instance_data_dir", "class_data_dir", "output_dir", "validation_data_dir")
SCORERS = ("demo", "clip", "dino")  # the image scorers by name; training/scorers.py maps each to its class


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


def _need(cond: bool, name: str, message: str, source: str | None) -> None:
    if not cond:
        raise ConfigError(name, message, source)


def validate(cfg: TrainConfig, source: str | None = None) -> None:
    """Impossible values and combinations, each naming the field to change."""
    _need(cfg.method in METHODS, "method", f"must be one of {', '.join(METHODS)}", source)
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
    if cfg.use_8bit_adam:
        import importlib.util

        _need(importlib.util.find_spec("bitsandbytes") is not None, "use_8bit_adam",
              "needs the 'bitsandbytes' package (pip install bitsandbytes) or use_8bit_adam = false", source)
    for name in ("train_data_dir", "instance_data_dir"):
        value = getattr(cfg, name)
        if value and (method == "text2image") == (name == "train_data_dir"):
            _need(Path(value).is_dir(), name, f"folder not found: {value}", source)


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
