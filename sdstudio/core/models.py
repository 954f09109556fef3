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

# Diffusers repos whose configs (and tokenizer) describe an A1111 single file of each family; SD 2
# files that state epsilon get SD 2.1-base's (the prediction type is decided by prediction_type.py).
DEFAULT_SINGLE_FILE_CONFIG = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sd2-epsilon": "stabilityai/stable-diffusion-2-1-base",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}
# Families sdstudio recognises but cannot train, and what to say about each.
UNTRAINABLE = {
    "sdxl-refiner": "an SDXL refiner (one OpenCLIP text encoder, no CLIP-L); sdstudio trains LoRAs on SDXL base models",
    "sd3": "a Stable Diffusion 3 (MMDiT) model; sdstudio trains SD 1.x/2.x and SDXL",
    "flux": "a Flux model; sdstudio trains SD 1.x/2.x and SDXL",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class BaseModel:
    """A base model that has been found and recognised, not yet loaded."""

    spec: str  # what the user wrote
    kind: str  # demo | folder | single_file | hub | full_checkpoint (a full fine-tune's, full/checkpoint_model.py)
    family: str  # sd1 | sd2 | sdxl (sd1 also covers small SD-1-architecture models like the demo)
    location: str  # folder/file path or hub id

    @property
    def name(self) -> str:
        if self.kind == "demo":
            return "sdstudio-demo"
        if self.kind == "hub":
            return self.location
        if self.kind == "full_checkpoint":
            from sdstudio.core.full.checkpoint_model import require_full_checkpoint

            return require_full_checkpoint(self.location).name
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

    sd1 | sd2 | sdxl | sdxl-refiner | sd3 | flux | lora | unet-only (UNet keys, no text encoder) | unknown.
    SDXL base (SGM layout) has CLIP-L at `conditioner.embedders.0.transformer.` and OpenCLIP bigG at
    `conditioner.embedders.1.model.`; the refiner has only the OpenCLIP one, as `embedders.0.model.`.
    """
    ks = list(keys)
    if any(k.startswith("conditioner.embedders.") for k in ks):
        return "sdxl" if any(k.startswith("conditioner.embedders.1.") for k in ks) else "sdxl-refiner"
    if any(".joint_blocks." in k or k.startswith("joint_blocks.") for k in ks):
        return "sd3"
    if any(k.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for k in ks):
        return "flux"
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
    """The family of a base model sdstudio can train (sd1/sd2/sdxl); ModelError says what else it is."""
    ks = list(keys)
    family = detect_family(ks)
    if family in UNTRAINABLE:
        raise ModelError(f"{where}: {UNTRAINABLE[family]}")
    if family == "sdxl":
        return family
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
    model_index = _read_json(index)
    unet_cfg = folder / "unet" / "config.json"
    return _family_from_configs(model_index, lambda: _read_json(unet_cfg) if unet_cfg.exists() else None, str(folder),
                                (folder / "text_encoder").is_dir())


def _family_from_configs(model_index: dict[str, Any], unet_config: Any, where: str, has_text_encoder: bool) -> str:
    """sd1 | sd2 | sdxl from a pipeline's model_index.json and (a callable giving) its unet config."""
    cls = str(model_index.get("_class_name", ""))
    if "Flux" in cls:
        raise ModelError(f"{where}: {UNTRAINABLE['flux']} ({cls})")
    if "StableDiffusion3" in cls:
        raise ModelError(f"{where}: {UNTRAINABLE['sd3']} ({cls})")
    if "3" in cls:
        raise ModelError(f"{where}: a {cls} model; sdstudio trains SD 1.x/2.x and SDXL")
    cfg = unet_config()
    if cfg is None:
        raise ModelError(f"{where}: model_index.json found but no unet/config.json")
    if "XL" in cls or cfg.get("addition_embed_type") == "text_time":
        if not (model_index.get("text_encoder") or [None])[-1] or not has_text_encoder:
            raise ModelError(f"{where}: {UNTRAINABLE['sdxl-refiner']} ({cls}, no text_encoder)")
        return "sdxl"
    return "sd2" if cfg.get("cross_attention_dim") == 1024 else "sd1"


def _hub_family(repo: str) -> str:
    """A hub model's family from its model_index.json and unet/config.json: from the local hub cache
    (no network), else fetched (two small files) unless HF_HUB_OFFLINE; sd1 when neither works
    (loading then says what is wrong)."""
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        cache = os.environ.get("HF_HUB_CACHE")
        files = [try_to_load_from_cache(repo, name, cache_dir=cache) for name in ("model_index.json", "unet/config.json")]
        if not all(isinstance(f, str) for f in files) and os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false"):
            files = [hf_hub_download(repo, name, cache_dir=cache) for name in ("model_index.json", "unet/config.json")]
        index, unet = (Path(f) for f in files)  # type: ignore[arg-type]
        model_index, unet_config = _read_json(index), _read_json(unet)
    except Exception:  # noqa: BLE001 - offline and not cached, or no such repo
        return "sd1"
    return _family_from_configs(model_index, lambda: unet_config, repo, True)


def _single_file_family(path: Path) -> str:
    if path.suffix == ".safetensors":
        return family_from_keys(safetensors_keys(path), str(path))
    from sdstudio.core.io.safeload import load_pickle_state_dict  # .ckpt: weights_only unpickling

    sd = load_pickle_state_dict(path, mmap=True)  # only the keys are needed
    return family_from_keys(sd, str(path))


def locate_model(spec: str | os.PathLike[str] | None) -> tuple[str, str]:
    """The one place a model name becomes a location: (kind, folder/file path or hub id).

    kind is demo | folder | single_file | hub | full_checkpoint (location: the chosen weights folder,
    step-N/ema or step-N/model). Nothing is read beyond `stat` (and a run's run.toml), so every command and
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
    from sdstudio.core.full.checkpoint_model import find_full_checkpoint

    full = find_full_checkpoint(text)
    if full is not None:
        return "full_checkpoint", str(full.weights_dir.resolve())
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
    if kind == "full_checkpoint":
        from sdstudio.core.full.checkpoint_model import require_full_checkpoint

        base_spec = require_full_checkpoint(location).base_spec()
        return BaseModel(text, kind, resolve_base_model(base_spec).family, location)
    if kind == "single_file":
        path = Path(location)
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelError(f"{text}: a '{path.suffix}' file is not a model; expected a diffusers folder or a "
                             f"single {'/'.join(SINGLE_FILE_SUFFIXES)} checkpoint")
        return BaseModel(text, kind, _single_file_family(path), location)
    return BaseModel(text, "hub", _hub_family(text), text)


def load_pipeline(model: BaseModel | str, torch_dtype: Any = None, config: str | None = None,
                  vae: str | None = None, vae_dtype: Any = None, components: dict[str, Any] | None = None) -> Any:
    """Load the family's pipeline on the CPU: StableDiffusionPipeline (safety checker off) or
    StableDiffusionXLPipeline (no watermarker). `vae`: another VAE (a diffusers VAE folder or hub
    id), e.g. SDXL's fp16-fix VAE, as the diffusers scripts' --pretrained_vae_model_name_or_path.

    Every component is loaded in its final dtype, `torch_dtype` (default fp32), the VAE in
    `vae_dtype` (default the same): each weight is converted once, from the file's dtype, so the
    model never exists in fp32 first (the same weights, bit for bit, as casting after an fp32 load).
    `components`: loaded modules that replace the model's own (a full checkpoint's, full/loading.py)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline

    base = model if isinstance(model, BaseModel) else resolve_base_model(model)
    quiet_loading()
    if base.kind == "full_checkpoint":  # the run's base with the checkpoint's components
        from sdstudio.core.full.loading import checkpoint_components

        base_spec, parts = checkpoint_components(base.location, torch_dtype or torch.float32)
        return load_pipeline(resolve_base_model(base_spec), torch_dtype, config, vae, vae_dtype, parts)
    dtype = torch_dtype or torch.float32
    vae_dtype = vae_dtype or dtype
    common: dict[str, Any] = {"dtype": dtype, **(components or {})}
    if vae:
        try:
            common["vae"] = AutoencoderKL.from_pretrained(os.path.expanduser(vae), torch_dtype=vae_dtype)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{vae}: cannot load this VAE ({str(exc).strip().splitlines()[0]}); expected a diffusers "
                             "AutoencoderKL folder or hub id") from None
    pipeline_class = StableDiffusionXLPipeline if base.family == "sdxl" else StableDiffusionPipeline
    if base.family == "sdxl":
        common["add_watermarker"] = False
    else:
        common.update(safety_checker=None, requires_safety_checker=False)
    try:
        if base.kind == "single_file":
            from sdstudio.core import prediction_type

            stated = prediction_type.stated(base.location)
            default = "sd2-epsilon" if base.family == "sd2" and stated and stated[0] == "epsilon" else base.family
            cfg = config or os.environ.get("SDSTUDIO_SINGLE_FILE_CONFIG") or DEFAULT_SINGLE_FILE_CONFIG[default]
            if "vae" not in common and vae_dtype != dtype:  # from_single_file takes one dtype for all
                common["vae"] = AutoencoderKL.from_single_file(base.location, config=cfg, subfolder="vae",
                                                               torch_dtype=vae_dtype)
            pipe = pipeline_class.from_single_file(base.location, config=cfg, **common)
            kind, _evidence = prediction_type.decide(base.location, base.family, pipe.unet)
            if kind is not None:
                pipe.scheduler = prediction_type.with_prediction_type(pipe.scheduler, kind)
        else:
            if "vae" not in common and vae_dtype != dtype:  # diffusers: a dtype per component
                common["dtype"] = {"default": dtype, "vae": vae_dtype}
            local = {"local_files_only": True} if base.kind in ("demo", "folder") else {}
            pipe = pipeline_class.from_pretrained(base.location, **local, **common)
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
        if base.kind == "full_checkpoint":  # a fine-tune samples as its base does
            from sdstudio.core.full.checkpoint_model import require_full_checkpoint

            return sampler_defaults(require_full_checkpoint(base.location).base_spec())
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
    elif base.kind in ("demo", "folder", "full_checkpoint"):
        weights = Path(base.location) / "unet"
        files = sorted(weights.glob("*.safetensors")) or sorted(weights.glob("*.bin"))
        if files:
            ident["sha256"] = file_sha256(files[0])  # UNet weights identify the model well enough
    else:
        digest = _hub_unet_sha256(base.location)
        if digest:
            ident["sha256"] = digest
    if "sha256" in ident:
        ident["short_hash"] = ident["sha256"][:10]
    return ident


def _hub_unet_sha256(repo: str) -> str | None:
    """The SHA-256 of a hub model's UNet weights, when they are in the local hub cache: the cache
    stores large (LFS) files under their SHA-256, so nothing is read or downloaded."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "unet/diffusion_pytorch_model.safetensors",
                                        cache_dir=os.environ.get("HF_HUB_CACHE"))
    except Exception:  # noqa: BLE001 - not a valid repo id, no cache: no hash
        return None
    if not isinstance(cached, str):
        return None
    blob = Path(os.path.realpath(cached)).name
    return blob if re.fullmatch(r"[0-9a-f]{64}", blob) else None
