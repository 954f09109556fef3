"""Resolve a base model: built-in demo | diffusers folder | single .safetensors/.ckpt | hub id.

`resolve_base_model` only reads configs and file headers (fast, no weights), so a bad
path or a model of another family is refused before anything heavy loads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.errors import ModelError
from sdstudio.core.filetypes import SINGLE_FILE_SUFFIXES
from sdstudio.core.io.hashing import file_sha256
from sdstudio.core.paths import DEMO_MODEL_NAME, demo_model_dir

# Diffusers repos whose configs (and tokenizer) describe an A1111 single file of each family.
DEFAULT_SINGLE_FILE_CONFIG = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class BaseModel:
    """A base model that has been found and recognised, not yet loaded."""

    spec: str  # what the user wrote
    kind: str  # demo | folder | single_file | hub
    family: str  # sd1 | sd2 (sd1 also covers small SD-1-architecture models like the demo)
    location: str  # folder/file path or hub id

    @property
    def name(self) -> str:
        if self.kind == "demo":
            return "sdstudio-demo"
        if self.kind == "hub":
            return self.location
        return Path(self.location).stem if self.kind == "single_file" else Path(self.location).name


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read ({exc})") from None


def safetensors_keys(path: Path) -> dict[str, Any]:
    """The header of a .safetensors file (tensor names -> dtype/shape) without loading it."""
    from sdstudio.core.io.safetensors_io import read_file_header

    return read_file_header(path)[0]


def detect_family(keys: Iterable[str]) -> str:
    """The one model-family detector, from A1111/SGM-layout keys; never raises.

    sd1 | sd2 | sdxl | lora | unet-only (UNet keys, no text encoder) | unknown.
    """
    ks = list(keys)
    if any(k.startswith("conditioner.embedders.") for k in ks):
        return "sdxl"
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_")) or ".lora_down." in k or "lora.down." in k
           or "lora_A" in k
           for k in ks[:2000]):
        return "lora"
    if not any(k.startswith("model.diffusion_model.") for k in ks):
        return "unknown"
    if any(k.startswith("cond_stage_model.model.") for k in ks):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in ks):
        return "sd1"
    return "unet-only"


def family_from_keys(keys: Iterable[str], where: str) -> str:
    """The family of a base model sdstudio can train (sd1/sd2); ModelError says what else it is."""
    ks = list(keys)
    family = detect_family(ks)
    if family == "sdxl":
        raise ModelError(f"{where}: this is an SDXL checkpoint; sdstudio trains SD 1.x/2.x models (expected "
                         "'cond_stage_model.' text-encoder keys)")
    if family == "lora":
        raise ModelError(f"{where}: this is a LoRA file, not a base model; pass it with --lora")
    if family == "unknown":
        sample = ", ".join(sorted(ks)[:3]) or "no tensors"
        raise ModelError(f"{where}: not a Stable Diffusion checkpoint (found keys like {sample}; expected "
                         "'model.diffusion_model.*')")
    return "sd2" if family == "sd2" else "sd1"


def _folder_family(folder: Path) -> str:
    index = folder / "model_index.json"
    if not index.exists():
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:6]) or "nothing"
        raise ModelError(f"{folder}: not a diffusers model folder (no model_index.json; found {found})")
    cls = str(_read_json(index).get("_class_name", ""))
    if "XL" in cls or "Flux" in cls or "3" in cls:
        raise ModelError(f"{folder}: a {cls} model; sdstudio trains Stable Diffusion 1.x/2.x "
                         "(expected StableDiffusionPipeline)")
    unet_cfg = folder / "unet" / "config.json"
    if not unet_cfg.exists():
        raise ModelError(f"{folder}: model_index.json found but no unet/config.json")
    cfg = _read_json(unet_cfg)
    if cfg.get("addition_embed_type") == "text_time":
        raise ModelError(f"{folder}: an SDXL UNet; sdstudio trains Stable Diffusion 1.x/2.x")
    return "sd2" if cfg.get("cross_attention_dim") == 1024 else "sd1"


def _single_file_family(path: Path) -> str:
    if path.suffix == ".safetensors":
        return family_from_keys(safetensors_keys(path), str(path))
    from sdstudio.core.io.safeload import load_pickle_state_dict  # .ckpt: weights_only unpickling

    sd = load_pickle_state_dict(path, mmap=True)  # only the keys are needed
    return family_from_keys(sd, str(path))


def locate_model(spec: str | os.PathLike[str] | None) -> tuple[str, str]:
    """The one place a model name becomes a location: (kind, folder/file path or hub id).

    kind is demo | folder | single_file | hub. Nothing is read beyond `stat`, so every command and
    screen (train, generate, merge, the merge preview) can afford to call it; `resolve_base_model`
    adds the family check on top. ModelError says what was expected.
    """
    text = str(spec).strip() if spec is not None else DEMO_MODEL_NAME
    if text in (DEMO_MODEL_NAME, ""):
        folder = demo_model_dir()
        if not (folder / "model_index.json").exists():
            raise ModelError(f"the built-in demo model is missing at {folder} (reinstall from a full clone, "
                             "or pass a model folder)")
        return "demo", str(folder)
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return "folder", str(path.resolve())
    if path.is_file():
        return "single_file", str(path.resolve())
    if _HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return "hub", text
    raise ModelError(f"{text}: no such file or folder (expected 'demo', a diffusers folder, a .safetensors/.ckpt "
                     "file or a hub id like 'org/name')")


def resolve_base_model(spec: str | os.PathLike[str] | None) -> BaseModel:
    """Find and recognise a base model; ModelError says what was found and what is expected."""
    text = str(spec).strip() if spec is not None else DEMO_MODEL_NAME
    kind, location = locate_model(text)
    if kind in ("demo", "folder"):
        return BaseModel(text or DEMO_MODEL_NAME, kind, _folder_family(Path(location)), location)
    if kind == "single_file":
        path = Path(location)
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelError(f"{text}: a '{path.suffix}' file is not a model; expected a diffusers folder or a "
                             f"single {'/'.join(SINGLE_FILE_SUFFIXES)} checkpoint")
        return BaseModel(text, kind, _single_file_family(path), location)
    return BaseModel(text, "hub", "sd1", text)


def load_pipeline(model: BaseModel | str, torch_dtype: Any = None, config: str | None = None) -> Any:
    """Load a StableDiffusionPipeline (safety checker off) on the CPU."""
    import torch
    from diffusers import StableDiffusionPipeline

    base = model if isinstance(model, BaseModel) else resolve_base_model(model)
    quiet_loading()
    common = {"dtype": torch_dtype or torch.float32, "safety_checker": None, "requires_safety_checker": False}
    try:
        if base.kind in ("demo", "folder"):
            pipe = StableDiffusionPipeline.from_pretrained(base.location, local_files_only=True, **common)
        elif base.kind == "single_file":
            cfg = config or os.environ.get("SDSTUDIO_SINGLE_FILE_CONFIG") or DEFAULT_SINGLE_FILE_CONFIG[base.family]
            pipe = StableDiffusionPipeline.from_single_file(base.location, config=cfg, **common)
        else:
            pipe = StableDiffusionPipeline.from_pretrained(base.location, **common)
    except ModelError:
        raise
    except (OSError, ValueError, EnvironmentError) as exc:
        hint = ""
        if base.kind == "single_file":
            hint = (" A single file needs its family's configs and tokenizer: pass a diffusers folder of the same "
                    "architecture with --model-config DIR (or set SDSTUDIO_SINGLE_FILE_CONFIG), or allow network "
                    "access to the hub.")
        elif base.kind == "hub":
            hint = " The hub could not be reached or has no such model; pass a local folder instead."
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{base.location}: cannot load ({first}).{hint}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sampler_defaults(model: str) -> dict[str, Any]:
    """Steps, guidance and size a model is meant for: the demo model ships them in
    `sdstudio_demo.json`; anything else gets Stable Diffusion's usual 30 steps at 7.5."""
    defaults: dict[str, Any] = {"steps": 30, "guidance": 7.5, "size": None}
    try:
        base = resolve_base_model(model)
    except Exception:  # noqa: BLE001 - a bad path is reported when generating, not while drawing the form
        return defaults
    hints = Path(base.location) / "sdstudio_demo.json" if base.kind in ("demo", "folder") else None
    if hints is not None and hints.is_file():
        try:
            data = json.loads(hints.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return defaults
        defaults.update(steps=int(data.get("num_inference_steps", 30)), guidance=float(data.get("guidance_scale", 7.5)),
                        size=data.get("resolution"))
    return defaults


def quiet_loading() -> None:
    """No download/loading progress bars or advisory warnings: the CLI and the studio show their own."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()


def model_identity(base: BaseModel) -> dict[str, str]:
    """Name and hash recorded in run.toml and export metadata (A1111's short hash is sha256[:10])."""
    ident = {"name": base.name, "kind": base.kind, "family": base.family, "location": base.location}
    if base.kind == "single_file":
        ident["sha256"] = file_sha256(base.location)
    elif base.kind in ("demo", "folder"):
        weights = Path(base.location) / "unet"
        files = sorted(weights.glob("*.safetensors")) or sorted(weights.glob("*.bin"))
        if files:
            ident["sha256"] = file_sha256(files[0])  # UNet weights identify the model well enough
    if "sha256" in ident:
        ident["short_hash"] = ident["sha256"][:10]
    return ident
