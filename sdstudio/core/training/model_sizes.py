"""A base model's parameter counts and shapes, read from safetensors headers (no weights, no torch).

The memory estimate (memory_estimate.py) needs, per component (unet, text_encoder, text_encoder_2,
vae): how many parameters, the largest tensor (a fused backward holds one gradient at a time),
the shapes of the layers a LoRA adapts, and the UNet/VAE configs that shape activations. A
safetensors header holds every tensor's shape, so this costs a few small reads, fast enough to
run on every change of the Train form. A model whose files cannot be read here (a hub model not
in the local cache, a .ckpt) gets its family's published sizes, and says so (`source`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.models import BaseModel, safetensors_keys

COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")
# The layers LoRA adapts (training/checkpoint.py): UNet attention projections, text-encoder ones.
_LORA_SUFFIXES = {"unet": (".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight"),
                  "text": (".q_proj.weight", ".k_proj.weight", ".v_proj.weight", ".out_proj.weight")}
# Single-file (LDM/SGM) key prefixes of each component.
_SINGLE_FILE_PREFIXES = {"unet": ("model.diffusion_model.",), "vae": ("first_stage_model.",),
                         "text_encoder": ("cond_stage_model.", "conditioner.embedders.0."),
                         "text_encoder_2": ("conditioner.embedders.1.",)}


@dataclass
class ComponentSize:
    params: int = 0  # floating-point parameters
    largest: int = 0  # the largest tensor's element count
    lora_shapes: list[tuple[int, int]] = field(default_factory=list)  # (in, out) of each LoRA-adapted layer
    shapes: list[tuple[int, ...]] = field(default_factory=list)  # every parameter's shape (Adafactor's factors)
    hidden: int = 0  # text encoders: the width of their hidden states (the text cache)


@dataclass
class ModelSizes:
    family: str
    components: dict[str, ComponentSize]
    unet_config: dict[str, Any]
    vae_config: dict[str, Any]
    source: str  # "files" (headers read) or "family defaults" (published sizes; the files were not readable)

    def params(self, name: str) -> int:
        comp = self.components.get(name)
        return comp.params if comp else 0

    @property
    def text_encoders(self) -> tuple[str, ...]:
        return tuple(n for n in ("text_encoder", "text_encoder_2") if n in self.components)

    @property
    def latent_channels(self) -> int:
        return int(self.vae_config.get("latent_channels", 4))

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae_config.get("block_out_channels", [0, 0, 0, 0])) - 1)


def _add(comp: ComponentSize, name: str, entry: dict[str, Any], kind: str) -> None:
    if not str(entry.get("dtype", "")).startswith(("F", "BF")):
        return  # position ids and other integer buffers
    shape = tuple(int(s) for s in entry.get("shape", ()))
    numel = math.prod(shape) if shape else 1
    comp.params += numel
    comp.largest = max(comp.largest, numel)
    comp.shapes.append(shape)
    if len(shape) == 2 and name.endswith(_LORA_SUFFIXES[kind]):
        comp.lora_shapes.append((shape[1], shape[0]))
    elif len(shape) == 2 and kind == "text" and name.endswith(".in_proj_weight"):  # OpenCLIP's fused q/k/v
        comp.lora_shapes.extend([(shape[1], shape[0] // 3)] * 3)
    if kind == "text" and name.endswith(("final_layer_norm.weight", "ln_final.weight")):
        comp.hidden = shape[0]


def _weight_files(folder: Path) -> list[Path]:
    """A component folder's safetensors (shards included); variants (.fp16.) only when nothing else."""
    files = sorted(folder.glob("*.safetensors"))
    plain = [f for f in files if len(f.name.split(".")) == 2 or "-of-" in f.name]
    return plain or files


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _from_folder(folder: Path, family: str) -> ModelSizes | None:
    comps: dict[str, ComponentSize] = {}
    for name in COMPONENTS:
        files = _weight_files(folder / name)
        if not files:
            continue
        comp = ComponentSize()
        kind = "unet" if name == "unet" else "text"
        for f in files:
            for key, entry in safetensors_keys(f).items():
                _add(comp, key, entry, kind)
        if name.startswith("text_encoder") and not comp.hidden:
            comp.hidden = int(_read_json(folder / name / "config.json").get("hidden_size", 0))
        comps[name] = comp
    if "unet" not in comps:
        return None
    unet_cfg = _read_json(folder / "unet" / "config.json") or FAMILY_UNET[family]
    vae_cfg = _read_json(folder / "vae" / "config.json") or FAMILY_VAE
    for name, params in FAMILY_PARAMS[family].items():  # a component whose file is missing here (a .bin)
        comps.setdefault(name, ComponentSize(params=params, largest=params // 100))
    return ModelSizes(family, comps, unet_cfg, vae_cfg, "files")


def _from_single_file(path: Path, family: str) -> ModelSizes:
    comps = {name: ComponentSize() for name in COMPONENTS}
    for key, entry in safetensors_keys(path).items():
        for name, prefixes in _SINGLE_FILE_PREFIXES.items():
            if key.startswith(prefixes):
                _add(comps[name], key, entry, "unet" if name == "unet" else "text")
                break
    comps = {n: c for n, c in comps.items() if c.params}
    return ModelSizes(family, comps, FAMILY_UNET[family], FAMILY_VAE, "files")


def _hub_snapshot(repo: str) -> Path | None:
    """The local hub cache's snapshot folder of `repo` (no network), when it holds model_index.json."""
    try:
        from huggingface_hub import try_to_load_from_cache

        index = try_to_load_from_cache(repo, "model_index.json", cache_dir=os.environ.get("HF_HUB_CACHE"))
    except Exception:  # noqa: BLE001 - no cache, bad id
        return None
    return Path(index).parent if isinstance(index, str) else None


def model_sizes(base: BaseModel) -> ModelSizes:
    """Parameter counts and shapes of `base`, from its files' headers where they can be read."""
    family = base.family if base.family in FAMILY_PARAMS else "sd1"
    try:
        if base.kind in ("demo", "folder"):
            found = _from_folder(Path(base.location), family)
            if found is not None:
                return found
        elif base.kind == "single_file" and base.location.endswith(".safetensors"):
            return _from_single_file(Path(base.location), family)
        elif base.kind == "hub":
            snapshot = _hub_snapshot(base.location)
            found = _from_folder(snapshot, family) if snapshot else None
            if found is not None:
                return found
    except Exception:  # noqa: BLE001 - an unreadable header: the family's sizes still give an estimate
        pass
    return family_defaults(family)


def family_defaults(family: str) -> ModelSizes:
    """The published sizes of SD 1.5, SD 2.1 and SDXL base (used when the files cannot be read):
    parameter counts, the LoRA-adapted layers from the architecture, other weights as 1280 x 1280
    matrices (what Adafactor's factored state needs)."""
    comps = {}
    for name, n in FAMILY_PARAMS[family].items():
        hidden = FAMILY_HIDDEN.get(name, {}).get(family, 0)
        square = 1280 * 1280
        comps[name] = ComponentSize(params=n, largest=n // 100, hidden=hidden,
                                    shapes=[(1280, 1280)] * (n // square) + [(n % square,)])
        if name == "unet":
            comps[name].lora_shapes = _unet_lora_shapes(FAMILY_UNET[family])
        elif hidden:
            comps[name].lora_shapes = [(hidden, hidden)] * 4 * FAMILY_TEXT_LAYERS[family][name]
    return ModelSizes(family, comps, FAMILY_UNET[family], FAMILY_VAE, "family defaults")


def _unet_lora_shapes(unet_config: dict[str, Any]) -> list[tuple[int, int]]:
    """(in, out) of every to_q/to_k/to_v/to_out.0 of a UNet config: per transformer layer, self-attention
    C -> C four times, cross-attention q and out C -> C, k and v from the text width."""
    channels = unet_config["block_out_channels"]
    n, layers, text = len(channels), unet_config["layers_per_block"], unet_config["cross_attention_dim"]
    depth = unet_config["transformer_layers_per_block"]
    depth = depth if isinstance(depth, list) else [depth] * n
    shapes: list[tuple[int, int]] = []
    for i, (c, kind) in enumerate(zip(channels, unet_config["down_block_types"])):
        count = ((2 * layers + 1) if "CrossAttn" in kind else 0) + (1 if i == n - 1 else 0)  # down, up, mid
        for _ in range(count * depth[i]):
            shapes += [(c, c)] * 6 + [(text, c)] * 2
    return shapes


FAMILY_PARAMS = {
    "sd1": {"unet": 859_520_964, "text_encoder": 123_060_480, "vae": 83_653_863},
    "sd2": {"unet": 865_910_724, "text_encoder": 340_387_840, "vae": 83_653_863},
    "sdxl": {"unet": 2_567_463_684, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840, "vae": 83_653_863},
}
FAMILY_TEXT_LAYERS = {"sd1": {"text_encoder": 12}, "sd2": {"text_encoder": 23},
                      "sdxl": {"text_encoder": 12, "text_encoder_2": 32}}
FAMILY_HIDDEN = {"text_encoder": {"sd1": 768, "sd2": 1024, "sdxl": 768}, "text_encoder_2": {"sdxl": 1280}}
_SD_UNET = {"layers_per_block": 2, "block_out_channels": [320, 640, 1280, 1280],
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "attention_head_dim": 8, "transformer_layers_per_block": 1, "cross_attention_dim": 768}
FAMILY_UNET = {
    "sd1": _SD_UNET,
    "sd2": {**_SD_UNET, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024},
    "sdxl": {"layers_per_block": 2, "block_out_channels": [320, 640, 1280],
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
             "cross_attention_dim": 2048},
}
FAMILY_VAE = {"latent_channels": 4, "block_out_channels": [128, 256, 512, 512]}
