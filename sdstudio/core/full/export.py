"""Export a full fine-tune's checkpoint as one model file A1111, ComfyUI and diffusers load.

Default: an fp16 single `.safetensors` in the LDM layout (SD 1.x/2.x) or SGM layout (SDXL), the
whole model (the checkpoint's UNet and text encoders, the base's VAE and untrained parts), with
the EMA weights when the checkpoint has them. `fmt="diffusers"` writes a diffusers pipeline
folder instead. Both are streamed tensor by tensor (`merge.merger.write_model`, the merge's own
writers, `merge.outputs`) and appear under their final name only when complete. The header
records the base model, step, EMA and dtype (`sdstudio_export`) and SAI `modelspec.*` keys.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from sdstudio import __version__
from sdstudio.core.errors import SdstudioError
from sdstudio.core.full.checkpoint_model import FullCheckpoint, find_full_checkpoint, full_run_checkpoint, is_full_run
from sdstudio.core.full.layout import EMA_DIR, MODEL_DIR, is_full_checkpoint
from sdstudio.core.progress import Progress
from sdstudio.core.runs.run_dir import RunDir

DTYPES = ("fp16", "bf16", "fp32")
FORMATS = ("single-file", "diffusers")


def is_full_source(source: str | os.PathLike[str]) -> bool:
    """A full fine-tune's run folder or checkpoint folder (else: a LoRA run's, for the LoRA export)."""
    p = Path(source)
    if p.name in (MODEL_DIR, EMA_DIR):
        p = p.parent
    return is_full_checkpoint(p) or is_full_run(RunDir(p))


def resolve_export_checkpoint(source: str | os.PathLike[str], step: int | None = None,
                              ema: bool | None = None) -> FullCheckpoint:
    """A full run (+ step, default the latest) or one of its checkpoint folders -> the checkpoint to export."""
    run = RunDir(source)
    if is_full_run(run):
        return full_run_checkpoint(run, step, ema)
    if step is not None:
        raise SdstudioError(f"{source}: --step applies to a run folder; this is one checkpoint already")
    found = find_full_checkpoint(source, ema)
    if found is None:
        raise SdstudioError(f"{source}: neither a full fine-tune run (run.toml with training_method = \"full\") "
                            "nor one of its checkpoint folders (step-N with model/unet/)")
    return found


def default_export_path(full: FullCheckpoint, dtype: str, fmt: str) -> Path:
    """RUN/exports/<run>-step<N>[-ema][-<dtype> unless fp16](.safetensors | -diffusers/)."""
    name = full.name + ("" if dtype == "fp16" else f"-{dtype}")
    folder = full.run.exports_dir if full.run is not None else full.path
    return folder / (f"{name}-diffusers" if fmt == "diffusers" else f"{name}.safetensors")


def export_metadata(full: FullCheckpoint, base_name: str, dtype: str, fmt: str, title: str) -> dict[str, str]:
    """What the file says about itself: `sdstudio_export` (JSON) and SAI modelspec keys."""
    from sdstudio.core.lora.export import architecture, base_identity

    cfg = full.run.config() if full.run else {}
    meta = full.run.meta() if full.run else {}
    base = base_identity(meta, cfg)
    arch, prediction = architecture(base["family"], base.get("prediction_type"))
    resolution = int(cfg.get("resolution", 512))
    record = {"run": full.run.name if full.run else None, "step": full.step, "ema": full.ema, "dtype": dtype,
              "format": fmt, "training_method": "full", "trained_components": sorted(full.components),
              "base_model": {**base, "name": base.get("name", base_name)},
              "sdstudio_version": meta.get("version", __version__)}
    spec = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": arch.removesuffix("/lora"),
        "modelspec.implementation": "diffusers" if fmt == "diffusers" else "sgm" if base["family"] == "sdxl" else "ldm",
        "modelspec.title": title,
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.prediction_type": prediction,
        "modelspec.description": (f"full fine-tune of {base['name']}, step {full.step}, "
                                  f"{'EMA' if full.ema else 'trained'} weights, {dtype} (sdstudio)"),
        "modelspec.trigger_phrase": cfg.get("instance_prompt"),
    }
    return {"format": "pt", "sdstudio_export": json.dumps(record, sort_keys=True),
            **{k: str(v) for k, v in spec.items() if v is not None}}


def export_full_checkpoint(source: str | os.PathLike[str], step: int | None = None, ema: bool | None = None,
                           dtype: str = "fp16", fmt: str = "single-file", out: str | os.PathLike[str] | None = None,
                           overwrite: bool = False) -> Path:
    """Write a full checkpoint as one model (see the module docstring) and return its path.

    `ema`: None takes the EMA weights when the checkpoint has them; True insists (an error if it
    has none); False takes the trained weights. A file or folder that exists is replaced only with
    `overwrite`."""
    from sdstudio.core.merge.sources import open_full_checkpoint
    from sdstudio.core.merge.merger import write_model
    from sdstudio.core.merge.outputs import DiffusersOutput, SingleFileOutput

    if dtype not in DTYPES:
        raise SdstudioError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if fmt not in FORMATS:
        raise SdstudioError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    full = resolve_export_checkpoint(source, step, ema)
    target = Path(os.path.expanduser(str(out))) if out else default_export_path(full, dtype, fmt)
    if fmt == "single-file" and target.suffix != ".safetensors":
        raise SdstudioError(f"{target}: a single-file export is a .safetensors file; give -o a name ending in "
                            ".safetensors (or pass --format diffusers for a folder)")
    if fmt == "diffusers" and target.suffix:
        raise SdstudioError(f"{target}: --format diffusers writes a folder; give -o a folder name without a suffix")
    if target.exists() and not overwrite:
        raise SdstudioError(f"{target}: already exists (pass --overwrite to replace it)")
    progress = Progress("export", 100)
    progress.update(0, detail="reading")
    src = open_full_checkpoint(full)
    try:
        metadata = export_metadata(full, src.name, dtype, fmt, target.stem if fmt == "single-file" else target.name)
        if fmt == "diffusers" and src.config_dir is None:
            raise SdstudioError(f"{source}: --format diffusers copies the base model's configs and tokenizer, and "
                                "this run's base is a single file; export the default single file instead")

        def output_for(entries: list[tuple[str, str, tuple[int, ...]]]) -> Any:
            if fmt == "diffusers":
                return DiffusersOutput(target, entries, metadata, src.config_dir)
            return SingleFileOutput(target, entries, metadata)

        def on_bytes(done: int, total: int) -> None:
            progress.update(min(99, done * 100 // max(total, 1)), detail="writing")

        written = write_model(src, output_for, dtype, on_bytes)
    finally:
        src.close()
    progress.finish()
    return written


def export_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What an export holds, read from its headers: tensors, bytes, the family detector's verdict
    (single file) and the metadata; for a diffusers folder, its UNet file's metadata."""
    from sdstudio.core.io.safetensors_io import read_file_header
    from sdstudio.core.models import detect_family

    p = Path(path)
    files = sorted(p.rglob("*.safetensors")) if p.is_dir() else [p]
    tensors, metadata = 0, {}
    for f in files:
        header, meta, _ = read_file_header(f)
        tensors += len(header)
        if "sdstudio_export" in meta:
            metadata = meta
    family = "diffusers" if p.is_dir() else detect_family(read_file_header(p)[0])
    return {"tensors": tensors, "bytes": sum(f.stat().st_size for f in files), "family": family, "metadata": metadata}
