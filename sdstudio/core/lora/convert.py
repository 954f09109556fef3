"""Convert a LoRA file between layouts (legacy attn-procs, diffusers/PEFT, kohya).

Pickled inputs (`.bin`, `.pkl`, `.pt`) are only ever read with `weights_only=True`: a file
whose pickle would import or run code is refused before anything from it executes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.lora.formats import LoraWeights, read_lora_file, save_lora_file

TARGETS = ("kohya", "diffusers")


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote, for the CLI and the studio to show."""

    path: Path
    source_format: str
    target_format: str
    modules: int
    tensors: int
    keys: list[str]
    ranks: list[int]
    alphas: list[float]
    components: list[str]


def default_output(src: Path, target: str) -> Path:
    return src.with_name(f"{src.stem}-{target}.safetensors")


def convert_file(src: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, to: str = "kohya",
                 dtype: Any = None, overwrite: bool = False) -> ConvertResult:
    """Read any supported LoRA file and write it as `to` (kohya or diffusers) `.safetensors`."""
    if to not in TARGETS:
        raise SdstudioError(f"--to {to!r}: expected one of {', '.join(TARGETS)}")
    source = Path(src)
    target = Path(out) if out else default_output(source, to)
    if target.suffix != ".safetensors":
        raise SdstudioError(f"{target}: the output is a .safetensors file; give -o a name ending in .safetensors")
    if target.resolve() == source.resolve():
        raise SdstudioError(f"{target}: output would overwrite the input; choose another -o")
    if target.exists() and not overwrite:
        raise SdstudioError(f"{target}: already exists (pass --overwrite to replace it)")
    weights: LoraWeights = read_lora_file(source)
    metadata = {k: v for k, v in weights.metadata.items() if k.startswith(("ss_", "modelspec."))}
    metadata["sdstudio_converted_from"] = f"{source.name} ({weights.source_format})"
    if to == "kohya":
        ranks, alphas = sorted(weights.ranks()), sorted(weights.alphas())
        metadata.setdefault("ss_network_module", "networks.lora")
        metadata.setdefault("ss_network_dim", str(max(ranks)))
        metadata.setdefault("ss_network_alpha", str(max(alphas)))
    save_lora_file(weights, target, to, dtype=dtype, metadata=metadata)
    from safetensors import safe_open

    with safe_open(str(target), framework="pt") as fh:
        keys = list(fh.keys())
    return ConvertResult(target, weights.source_format, to, len(weights.modules), len(keys), keys,
                         sorted(weights.ranks()), sorted(weights.alphas()), weights.components())
