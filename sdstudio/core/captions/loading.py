"""Find a captioning model, tell its family, and load it the way every family shares.

A model is a local folder or a hub id read from the local cache (`local_files_only`) unless the
user allows downloads; its revision (the cache snapshot's commit, or the one asked for) goes into
the captions log. The family comes from config.json's `model_type`, so a fine-tuned BLIP or
Florence-2 works under any name. Never `trust_remote_code`: the three families are native in
transformers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

from sdstudio.core.errors import ModelError

# model_type in config.json -> the module of its captioner
FAMILIES = {"blip": "blip", "florence2": "florence", "qwen2_5_vl": "vlm"}
PICKLED = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.msgpack", "*.h5"]  # never fetched, never loaded
SUGGESTED = {"blip": "Salesforce/blip-image-captioning-large", "florence": "florence-community/Florence-2-base",
             "vlm": "Qwen/Qwen2.5-VL-3B-Instruct"}


class Captioner(Protocol):
    """What a captioning pass needs of a model (the demo captioner is one too)."""

    name: str
    revision: str | None
    family: str
    default_prompt: str | None  # the instruction a chat model gets without --prompt; None: takes none

    def caption(self, images: list[Any], prompt: str | None, max_new_tokens: int) -> list[str]: ...


@dataclass(frozen=True)
class Located:
    name: str  # as the user gave it
    folder: Path
    revision: str | None
    family: str


def _missing(name: str, why: str) -> ModelError:
    return ModelError(
        f"captioning model '{name}' not found ({why}). Pass a local model folder, or download it once: "
        f"`sdstudio caption DIR --model {name} --download` (needs the network; it is cached for next time). "
        f"Known to work: {', '.join(SUGGESTED.values())}, or --model demo for the demo world.")


def model_folder(name: str, allow_download: bool, revision: str | None,
                 missing: Callable[[str, str], Exception]) -> tuple[Path, str | None]:
    """(folder, revision) of a local model folder or a hub id (the local cache unless `allow_download`;
    pickled weights never fetched); `missing(name, why)` makes the error when it cannot be found.
    Shared by the captioners and the CLIPSeg masker."""
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        return path.resolve(), revision
    if path.suffix or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise missing(name, "no such folder, and not a hub id like 'org/name'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(name, revision=revision, local_files_only=not allow_download,
                                        ignore_patterns=PICKLED))
    except LocalEntryNotFoundError:
        raise missing(name, "not in the local Hugging Face cache") from None
    except (HfHubHTTPError, OSError) as exc:
        raise missing(name, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None
    return folder, folder.name  # snapshots/<commit>


def locate(name: str, allow_download: bool = False, revision: str | None = None) -> Located:
    """Resolve `name` to a folder with config.json; ModelError names the model and what to do."""
    folder, rev = model_folder(name, allow_download, revision, _missing)
    config = folder / "config.json"
    if not config.is_file():
        raise ModelError(f"{folder}: no config.json; expected a transformers model folder (BLIP, Florence-2 or Qwen2.5-VL)")
    try:
        model_type = str(json.loads(config.read_text(encoding="utf-8")).get("model_type", ""))
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ModelError(f"{config}: not valid JSON ({exc})") from None
    if model_type not in FAMILIES:
        raise ModelError(f"{name}: model_type '{model_type}' is not a captioner sdstudio runs; "
                         f"supported: {', '.join(FAMILIES)} (e.g. {', '.join(SUGGESTED.values())})")
    if not any(folder.glob("*.safetensors")):
        raise ModelError(f"{name}: no .safetensors weights in {folder}; sdstudio does not load pickled "
                         "checkpoints (.bin). Convert it, or pick a repository that ships safetensors.")
    return Located(name, folder, rev, FAMILIES[model_type])


def device_and_dtype(device: str | None = None) -> tuple[Any, Any]:
    """The GPU in bf16 (fp16 where bf16 is unsupported) when there is one, else the CPU in fp32."""
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return dev, torch.float32


def load(name: str, allow_download: bool = False, revision: str | None = None, device: str | None = None) -> Captioner:
    """Load a transformers captioner (BLIP, Florence-2 or Qwen2.5-VL) by name or folder."""
    import importlib

    located = locate(name, allow_download, revision)
    module = importlib.import_module(f"sdstudio.core.captions.{located.family}")
    dev, dtype = device_and_dtype(device)
    try:
        return module.load(located, dev, dtype)
    except (OSError, ValueError) as exc:  # a processor or weight file missing or broken
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{name}: cannot load this {located.family} captioner from {located.folder} ({first})") from None


class HFCaptioner:
    """Holds what every transformers captioner shares: model, processor, device, dtype, provenance."""

    family = ""
    default_prompt: str | None = None

    def __init__(self, located: Located, model: Any, processor: Any, device: Any, dtype: Any) -> None:
        self.name = located.name
        self.revision = located.revision
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.dtype = dtype

    def inputs(self, batch: Any) -> dict[str, Any]:
        """A processor's output on the model's device; floating tensors (pixels) in the model's dtype."""
        out = {}
        for key, value in batch.items():
            if hasattr(value, "to"):
                value = value.to(self.device, dtype=self.dtype) if value.is_floating_point() else value.to(self.device)
            out[key] = value
        return out

    def generate(self, inputs: dict[str, Any], max_new_tokens: int, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **kwargs)


def from_pretrained(cls: Any, located: Located, dtype: Any) -> Any:
    """`cls.from_pretrained` from the resolved folder: local files only, safetensors only (a pickled
    checkpoint is never unpickled), no remote code."""
    return cls.from_pretrained(str(located.folder), local_files_only=True, trust_remote_code=False, dtype=dtype,
                               use_safetensors=True)
