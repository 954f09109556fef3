"""The optimizers a run can use, by name (`optimizer`): torch's AdamW, bitsandbytes' 8-bit AdamW,
transformers' Adafactor. LoRA and full runs build theirs here.

Adafactor is used as a plain optimizer with the config's learning rate (`relative_step=False`,
`scale_parameter=False`, `warmup_init=False`), so the LR scheduler and `learning_rate` mean the
same for every optimizer; `adam_weight_decay` is its weight decay too (both decay decoupled from
the gradient, `p -= lr * wd * p`).
"""

from __future__ import annotations

from typing import Any

from sdstudio.core.errors import ConfigError

BITSANDBYTES_HINT = ("adamw8bit needs the 'bitsandbytes' package: `python -m pip install bitsandbytes` "
                     "(it needs a CUDA GPU), or set optimizer = \"adamw\" (or \"adafactor\", which also keeps "
                     "little optimizer state)")


def bitsandbytes_missing_message(field: str = "optimizer") -> str:
    """What a run that asks for adamw8bit without bitsandbytes is told (config_checks uses it)."""
    return BITSANDBYTES_HINT if field == "optimizer" else BITSANDBYTES_HINT.replace(
        "set optimizer = \"adamw\"", "drop use_8bit_adam")


def param_groups(cfg: Any, unet_params: list[Any], text_encoder_params: list[Any], lr: float,
                 scale: float = 1.0) -> list[dict[str, Any]]:
    """The UNet's parameters at `lr`, the text encoders' at `text_encoder_lr` (default `lr`);
    `scale` (scale_lr) multiplies both. Empty groups are left out."""
    te_lr = (cfg.text_encoder_lr * scale) if cfg.text_encoder_lr is not None else lr
    groups = [{"params": unet_params, "lr": lr}]
    if text_encoder_params:
        groups.append({"params": text_encoder_params, "lr": te_lr})
    return [g for g in groups if g["params"]]


def build(cfg: Any, params: list[Any] | list[dict[str, Any]], lr: float, fused: bool = False) -> Any:
    """The optimizer `cfg.resolved_optimizer` names over `params` (tensors, or param groups with
    their own `lr`); `fused`: torch's fused AdamW kernel (CUDA)."""
    import torch

    name = cfg.resolved_optimizer
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, relative_step=False, scale_parameter=False, warmup_init=False,
                         weight_decay=cfg.adam_weight_decay)
    kwargs = dict(lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.adam_weight_decay, eps=cfg.adam_epsilon)
    if name == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            field = "use_8bit_adam" if cfg.use_8bit_adam else "optimizer"
            raise ConfigError(field, f"{bitsandbytes_missing_message(field)} ({exc})") from None
        return bnb.optim.AdamW8bit(params, **kwargs)
    return torch.optim.AdamW(params, fused=fused or None, **kwargs)
