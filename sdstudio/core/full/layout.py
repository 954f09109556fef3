"""Where a full fine-tune's checkpoint keeps its weights (the contract with export, Generate, Merge).

    step-NNNNNN/model/unet/                  diffusers `save_pretrained` (sharded safetensors)
    step-NNNNNN/model/text_encoder[_2]/      the trained text encoders (absent when frozen)
    step-NNNNNN/ema/<component>/             their EMA weights (when use_ema), same format
    step-NNNNNN/state/                       Accelerate's state: optimizer, RNG, scheduler, counters

Components that did not train are the base model's: run.toml names the base.
"""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = "model"
EMA_DIR = "ema"
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


def model_dir(checkpoint: Path, ema: bool = False) -> Path:
    return checkpoint / (EMA_DIR if ema else MODEL_DIR)


def is_full_checkpoint(checkpoint: Path) -> bool:
    """A full fine-tune checkpoint (checkpoints are staged and swapped in whole, see training/checkpoint.py)."""
    return (model_dir(checkpoint) / "unet" / "config.json").is_file()


def has_ema(checkpoint: Path) -> bool:
    return (model_dir(checkpoint, ema=True) / "unet" / "config.json").is_file()


def trained_components(checkpoint: Path, ema: bool = False) -> dict[str, Path]:
    """Component name -> folder of the weights this checkpoint holds (EMA ones when `ema`)."""
    root = model_dir(checkpoint, ema)
    return {name: root / name for name in COMPONENTS if (root / name / "config.json").is_file()}
