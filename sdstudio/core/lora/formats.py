"""LoRA state dicts in every common layout, read into one form and written back out.

Formats (`detect_format`):
    peft         unet.<path>.lora_A.weight / lora_B.weight (alpha in the file's `lora_adapter_metadata`)
    diffusers    unet.<path>.lora.down.weight / lora.up.weight, text_encoder.<path>.lora_linear_layer.*
                 (what `save_lora_weights` writes after `convert_state_dict_to_diffusers`)
    attn_procs   <path>.processor.to_q_lora.down.weight (old `unet.save_attn_procs`, no alpha: alpha = rank)
    kohya        lora_unet_<path_with_>.lora_down.weight / lora_up.weight / alpha  (A1111, ComfyUI)

In all of them the weight change of a module is  scale * (alpha / rank) * up @ down, so a
`LoraModule` keeps down, up and the true alpha; files without an alpha mean alpha = rank.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.filetypes import PICKLE_SUFFIXES
from sdstudio.core.lora.keys import (TEXT_ENCODER, TEXT_ENCODER_2, TEXT_ENCODERS, UNET, LoraKeyError, canonical_path,
                                     kohya_name, path_from_attn_procs, path_from_kohya)

FORMATS = ("peft", "diffusers", "attn_procs", "kohya")
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # where diffusers keeps the LoraConfig of each component

# key -> (module part, role); tried in order, the first that matches wins.
_KEY_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("kohya", re.compile(r"^(?P<mod>lora_(?:unet|te\d?)_[^.]+)\.(?P<role>lora_down|lora_up)\.weight$")),
    ("kohya", re.compile(r"^(?P<mod>lora_(?:unet|te\d?)_[^.]+)\.(?P<role>alpha)$")),
    ("peft", re.compile(r"^(?P<mod>.+)\.(?P<role>lora_A|lora_B)(?:\.default)?\.weight$")),
    ("attn_procs", re.compile(r"^(?P<mod>.+\.(?:processor|self_attn)\.to_(?:q|k|v|out)_lora)\.(?P<role>down|up)\.weight$")),
    ("diffusers", re.compile(r"^(?P<mod>.+)\.(?:lora|lora_linear_layer)\.(?P<role>down|up)\.weight$")),
    ("diffusers", re.compile(r"^(?P<mod>(?:unet|text_encoder|text_encoder_2)\..+)\.(?P<role>alpha)$")),
]
_FAMILY = {"kohya": "kohya", "attn_procs": "attn_procs", "peft": "diffusers", "diffusers": "diffusers"}
_ROLE = {"lora_down": "down", "lora_up": "up", "lora_A": "down", "lora_B": "up", "down": "down", "up": "up",
         "alpha": "alpha"}


class LoraFormatError(LoraKeyError):
    """A state dict that is not a LoRA in a layout sdstudio reads."""


@dataclass
class LoraModule:
    """One patched layer: delta W = (alpha / rank) * up @ down (conv: over the flattened kernel)."""

    down: Any  # (rank, in) or (rank, in, kh, kw)
    up: Any  # (out, rank) or (out, rank, 1, 1)
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def delta(self) -> Any:
        """The full weight change (for tests and merges), in float32."""
        down = self.down.float().flatten(1)
        up = self.up.float().flatten(1)
        d = (self.alpha / self.rank) * (up @ down)
        return d.reshape(self.up.shape[:1] + self.down.shape[1:]) if self.down.dim() == 4 else d


@dataclass
class LoraWeights:
    """A LoRA in format-neutral form: `(component, diffusers module path) -> LoraModule`."""

    modules: dict[tuple[str, str], LoraModule]
    source_format: str
    metadata: dict[str, str] = field(default_factory=dict)

    def components(self) -> list[str]:
        return sorted({c for c, _ in self.modules})

    def ranks(self) -> set[int]:
        return {m.rank for m in self.modules.values()}

    def alphas(self) -> set[float]:
        return {m.alpha for m in self.modules.values()}


def _classify(key: str) -> tuple[str, str, str] | None:
    for fmt, pattern in _KEY_PATTERNS:
        m = pattern.match(key)
        if m:
            return fmt, m.group("mod"), _ROLE[m.group("role")]
    return None


def detect_format(keys: Any, where: str = "state dict") -> str:
    """The LoRA layout of a set of tensor names (from its down/up weights; alphas follow them)."""
    keys = list(keys)
    found = {c[0] for k in keys if (c := _classify(k)) and c[2] != "alpha"}
    if found == {"peft", "diffusers"}:
        return "diffusers"  # convert_state_dict_to_diffusers renames attention layers only (CLIP mlp stays peft)
    if len(found) == 1:
        return found.pop()
    if not found:
        sample = ", ".join(sorted(keys)[:3]) or "no tensors"
        raise LoraFormatError(f"{where}: not a LoRA file sdstudio can read (keys like {sample}; expected "
                              "lora_unet_*.lora_down.weight, unet.*.lora_A.weight, unet.*.lora.down.weight or "
                              "*.processor.to_q_lora.down.weight)")
    raise LoraFormatError(f"{where}: mixes LoRA layouts ({', '.join(sorted(found))}); expected one")


def _diffusers_module(mod: str) -> tuple[str, str]:
    """`unet.<path>` / `text_encoder.<path>` / bare `<path>` -> (component, canonical path)."""
    for head in (UNET, TEXT_ENCODER, TEXT_ENCODER_2):
        if mod.startswith(head + "."):
            return head, canonical_path(head, mod[len(head) + 1:])
    if mod.startswith(("text_model.", "encoder.layers.")):
        return TEXT_ENCODER, canonical_path(TEXT_ENCODER, mod)
    return UNET, mod


def _module_id(fmt: str, mod: str) -> tuple[str, str]:
    if fmt == "kohya":
        return path_from_kohya(mod)
    if fmt == "attn_procs":
        prefix, layer = mod.rsplit(".", 1)
        return path_from_attn_procs(prefix, layer)
    return _diffusers_module(mod)


def _pattern_value(patterns: Mapping[str, Any], path: str) -> Any:
    """PEFT's rank/alpha patterns: a key matches a module path ending in it."""
    for key, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?(?:{key})", path):
            return value
    return None


def adapter_configs(metadata: Mapping[str, str] | None) -> dict[str, dict[str, Any]]:
    """The per-component LoraConfig dicts diffusers stores in a file's metadata ({} when absent)."""
    raw = (metadata or {}).get(ADAPTER_METADATA_KEY)
    if not raw:
        return {}
    try:
        flat = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        head, _, name = key.partition(".")
        if head in (UNET, *TEXT_ENCODERS) and name:
            out.setdefault(head, {})[name] = value
    return out


def parse_lora(state_dict: Mapping[str, Any], metadata: Mapping[str, str] | None = None,
               default_alpha: Mapping[str, float] | float | None = None, where: str = "state dict") -> LoraWeights:
    """Read any supported layout. Alpha comes from `.alpha` tensors, else the file's adapter
    metadata, else `default_alpha` (one value or per component), else alpha = rank."""
    fmt = detect_format(state_dict.keys(), where)
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    for key, tensor in state_dict.items():
        c = _classify(key)
        if c is None or _FAMILY[c[0]] != _FAMILY[fmt]:
            raise LoraFormatError(f"{where}: unexpected tensor {key!r} in a {fmt} LoRA")
        _, mod, role = c
        parts.setdefault(_module_id(fmt, mod), {})[role] = tensor
    configs = adapter_configs(metadata)
    modules: dict[tuple[str, str], LoraModule] = {}
    for (component, path), p in parts.items():
        if "down" not in p or "up" not in p:
            missing = "down" if "down" not in p else "up"
            raise LoraFormatError(f"{where}: module {component}.{path} has no {missing} weight")
        rank = int(p["down"].shape[0])
        if int(p["up"].shape[1]) != rank:
            raise LoraFormatError(f"{where}: module {component}.{path}: up {tuple(p['up'].shape)} does not match "
                                  f"down {tuple(p['down'].shape)}")
        alpha = _alpha_for(component, path, rank, p.get("alpha"), configs, default_alpha)
        modules[(component, path)] = LoraModule(p["down"], p["up"], alpha)
    return LoraWeights(modules, fmt, dict(metadata or {}))


def _alpha_for(component: str, path: str, rank: int, tensor: Any, configs: Mapping[str, Mapping[str, Any]],
               default: Mapping[str, float] | float | None) -> float:
    if tensor is not None:
        return float(tensor.item() if hasattr(tensor, "item") else tensor)
    cfg = configs.get(component)
    if cfg and cfg.get("lora_alpha") is not None:
        short = path.removeprefix("text_model.")
        pattern = _pattern_value(cfg.get("alpha_pattern") or {}, short)
        return float(pattern if pattern is not None else cfg["lora_alpha"])
    if isinstance(default, Mapping):
        default = default.get(component)
    return float(default) if default is not None else float(rank)


def _cast(tensor: Any, dtype: Any) -> Any:
    return tensor.detach().to("cpu", dtype=dtype) if dtype is not None else tensor.detach().cpu()


def to_kohya(weights: LoraWeights, dtype: Any = None, sdxl: bool | None = None) -> dict[str, Any]:
    """kohya keys with the true alpha per module (A1111 / ComfyUI read it as alpha / rank).
    SDXL (given, or seen from a second text encoder) names the encoders lora_te1_/lora_te2_."""
    import torch

    if sdxl is None:
        sdxl = TEXT_ENCODER_2 in weights.components()
    out: dict[str, Any] = {}
    for (component, path), m in sorted(weights.modules.items()):
        name = kohya_name(component, path, sdxl)
        out[f"{name}.lora_down.weight"] = _cast(m.down, dtype)
        out[f"{name}.lora_up.weight"] = _cast(m.up, dtype)
        out[f"{name}.alpha"] = torch.tensor(m.alpha, dtype=dtype or torch.float32)
    return out


def _component_config(mods: dict[str, LoraModule]) -> dict[str, Any]:
    """A LoraConfig dict for diffusers: the common rank/alpha, exceptions as PEFT patterns."""
    from collections import Counter

    ranks = Counter(m.rank for m in mods.values())
    alphas = Counter(m.alpha for m in mods.values())
    r, alpha = ranks.most_common(1)[0][0], alphas.most_common(1)[0][0]
    targets = sorted(mods)
    return {
        "r": r, "lora_alpha": alpha, "target_modules": targets,
        "rank_pattern": {re.escape(p): m.rank for p, m in mods.items() if m.rank != r},
        "alpha_pattern": {re.escape(p): m.alpha for p, m in mods.items() if m.alpha != alpha},
    }


def to_peft(weights: LoraWeights, dtype: Any = None) -> tuple[dict[str, Any], dict[str, str]]:
    """diffusers/PEFT keys plus the `lora_adapter_metadata` that carries rank and alpha."""
    out: dict[str, Any] = {}
    by_component: dict[str, dict[str, LoraModule]] = {}
    for (component, path), m in sorted(weights.modules.items()):
        short = path.removeprefix("text_model.") if component in TEXT_ENCODERS else path
        out[f"{component}.{path}.lora_A.weight"] = _cast(m.down, dtype)
        out[f"{component}.{path}.lora_B.weight"] = _cast(m.up, dtype)
        by_component.setdefault(component, {})[short] = m
    flat = {f"{c}.{k}": v for c, mods in by_component.items() for k, v in _component_config(mods).items()}
    return out, {ADAPTER_METADATA_KEY: json.dumps(flat, sort_keys=True), "format": "pt"}




def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and metadata of a .safetensors file, or of a pickle loaded with weights_only."""
    p = Path(path)
    if not p.is_file():
        raise SdstudioError(f"{p}: no such file")
    if p.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(p), framework="pt") as fh:
                return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
        except (SafetensorError, OSError) as exc:
            raise SdstudioError(f"{p}: not a readable .safetensors file ({exc})") from None
    if p.suffix.lower() in PICKLE_SUFFIXES:
        from sdstudio.core.io.safeload import load_pickle_state_dict

        sd = load_pickle_state_dict(p)
        bad = [k for k, v in sd.items() if not hasattr(v, "shape")]
        if bad:
            raise LoraFormatError(f"{p}: entry {bad[0]!r} is not a tensor; expected a flat dict of LoRA tensors")
        return sd, {}
    raise SdstudioError(f"{p}: unsupported file type '{p.suffix}' (expected .safetensors, "
                        f"{', '.join(PICKLE_SUFFIXES)})")


def read_lora_file(path: str | os.PathLike[str], default_alpha: Mapping[str, float] | float | None = None) -> LoraWeights:
    """Any supported LoRA file (pickles only through weights_only loading)."""
    sd, meta = read_state_dict(path)
    return parse_lora(sd, meta, default_alpha, where=str(path))


def save_lora_file(weights: LoraWeights, path: str | os.PathLike[str], fmt: str = "kohya", dtype: Any = None,
                   metadata: Mapping[str, str] | None = None) -> Path:
    """Write `weights` as kohya or diffusers/PEFT `.safetensors`, atomically."""
    from sdstudio.core.io.atomic import save_safetensors

    if fmt == "kohya":
        tensors, meta = to_kohya(weights, dtype), {}
    elif fmt in ("diffusers", "peft"):
        tensors, meta = to_peft(weights, dtype)
    else:
        raise SdstudioError(f"unknown LoRA output format {fmt!r} (expected kohya or diffusers)")
    meta = {**meta, **{k: str(v) for k, v in (metadata or {}).items()}}
    save_safetensors(tensors, path, metadata=meta or None)
    return Path(path)
