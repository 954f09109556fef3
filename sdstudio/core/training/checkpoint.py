"""Checkpoints: the LoRA file loaders use, beside Accelerate's full training state. (A full
fine-tune's checkpoint holds model/ and ema/ folders instead: core/full/layout.py, trainable.py.)

    step-NNNNNN/pytorch_lora_weights.safetensors   diffusers keys: load_lora_weights loads it
    step-NNNNNN/state/                             `accelerator.save_state`: optimizer, GradScaler
                                                   (fp16), RNG states per process, and the registered
                                                   objects (LR scheduler, the trainer's counters)
    step-NNNNNN/state/lora_peft.safetensors        the adapters as peft names them (fp32), written by
                                                   the save hook in place of the whole frozen model

Accelerate does the state; two things are ours, and why: the model part (Accelerate would save
the full UNet, gigabytes of frozen weights, where the adapters are a few megabytes), and the
folder swap (`save_state` writes into a folder in place; a kill mid-write must leave the
previous checkpoint whole). Keys are always the plain module names: models are unwrapped
from DDP and from `torch.compile` before their adapters are read or written.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.io.atomic import apply_umask, fsync_dir
from sdstudio.core.runs.run_dir import LORA_WEIGHTS_NAME, CheckpointRecord, RunDir

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
PEFT_FILE = "lora_peft.safetensors"


def lora_config(rank: int, alpha: float, targets: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets)


@dataclass
class TrainerCounters:
    """The trainer's own progress, saved and restored by Accelerate (register_for_checkpointing)."""

    step: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])


def plain(accelerator: Any, model: Any) -> Any:
    """The model without DDP and without the torch.compile wrapper (so keys carry no `_orig_mod.`)."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def _adapter_metadata(model: Any) -> dict[str, Any] | None:
    cfg = getattr(model, "peft_config", {}).get("default")
    if cfg is None:
        return None
    data = cfg.to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in data.items()}


def write_lora_weights(folder: Path, trained: dict[str, Any]) -> None:
    """The diffusers-format LoRA file of the plain (unwrapped) trained models, by component name
    (`unet`, `text_encoder`, SDXL's `text_encoder_2`)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    unet = trained["unet"]
    sdxl = "text_encoder_2" in trained or getattr(unet.config, "addition_embed_type", None) == "text_time"
    kwargs: dict[str, Any] = {}
    for name, model in trained.items():
        kwargs[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(model))
        kwargs[f"{name}_lora_adapter_metadata"] = _adapter_metadata(model)
    pipeline_class = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    pipeline_class.save_lora_weights(folder, weight_name=LORA_WEIGHTS_NAME, safe_serialization=True, **kwargs)


def write_peft_state(path: Path, trained: dict[str, Any]) -> None:
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    tensors = {f"{name}.{k}": v.detach().float().cpu().contiguous()
               for name, model in trained.items() for k, v in get_peft_model_state_dict(model).items()}
    save_file(tensors, str(path))


def read_peft_state(path: Path, trained: dict[str, Any]) -> None:
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    for name, model in trained.items():
        prefix = name + "."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not sd:
            continue
        unexpected = getattr(set_peft_model_state_dict(model, sd), "unexpected_keys", None)
        if unexpected:
            raise RuntimeError(f"{path}: does not match the model: unexpected keys {unexpected[:3]}")


def lora_digest(trained: dict[str, Any]) -> str:
    """sha256 of the adapter tensors (names and bytes, fp32): equal digests, equal weights."""
    import hashlib

    from peft.utils import get_peft_model_state_dict

    h = hashlib.sha256()
    for name, model in trained.items():
        for key, value in sorted(get_peft_model_state_dict(model).items()):
            h.update(f"{name}.{key}".encode())
            h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def rank_digests(trained: dict[str, Any], full: bool = False) -> list[str]:
    """Every process's digest of its trained weights (the LoRA's, or a full run's every weight),
    in rank order (a collective: all processes call it)."""
    from accelerate.utils import gather_object

    if full:
        from sdstudio.core.full.weights import digest

        return list(gather_object([digest(trained)]))
    return list(gather_object([lora_digest(trained)]))


def check_ranks_agree(trained: dict[str, Any], step: int, full: bool = False) -> str:
    """Every process must hold the same trained weights (DDP all-reduces every trained module);
    returns the digests line for the log, raises TrainingError when they differ."""
    from sdstudio.core.errors import TrainingError

    digests = rank_digests(trained, full)
    what = "full weights" if full else "LoRA weights"
    line = ", ".join(f"rank {i} {d[:16]}" for i, d in enumerate(digests))
    if len(set(digests)) > 1:
        raise TrainingError(f"the processes disagree on the {what} at step {step} ({line}); "
                            "the checkpoint would hold rank 0's copy only")
    return f"{'Full-weights' if full else 'LoRA'} digests at step {step}: {line}"


def install_hooks(accelerator: Any, models: Any) -> None:
    """Make save_state/load_state write and read only the adapters. `models()` returns the plain
    trained models by component name."""

    def save_hook(_models: list[Any], weights: list[Any], output_dir: str) -> None:
        weights.clear()  # no full-model files: the adapters are the trained part
        if accelerator.is_main_process:
            write_peft_state(Path(output_dir) / PEFT_FILE, models())

    def load_hook(loaded: list[Any], input_dir: str) -> None:
        loaded.clear()
        read_peft_state(Path(input_dir) / PEFT_FILE, models())

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def has_resume_state(ckpt: CheckpointRecord, full: bool = False) -> bool:
    if full:
        from sdstudio.core.full.trainable import has_resume_state as full_state

        return full_state(ckpt.path)
    return (ckpt.state_dir / PEFT_FILE).exists() and any(ckpt.state_dir.glob("custom_checkpoint_*.pkl"))


def check_plain_data(state_dir: Path) -> None:
    """Accelerate reads registered objects with weights_only=False; read each one first with
    weights_only=True, so a file holding anything but plain data is refused, never run."""
    import torch

    for path in sorted(state_dir.glob("custom_checkpoint_*.pkl")):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any refusal means: not plain data
            raise SdstudioError(f"{path}: not plain training state ({type(exc).__name__}); refusing to unpickle it. "
                                "Resume from another checkpoint or start a new run") from None


def _settle_tree(root: Path) -> None:
    """Durable (fsync every file and folder) and readable as the umask says (some library
    writers leave 0600 temporary files behind their renames)."""
    for path in root.rglob("*"):
        if path.is_file():
            apply_umask(path)
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        apply_umask(folder, directory=True)
        fsync_dir(folder)


def staging_path(run: RunDir, step: int) -> Path:
    final = run.checkpoint_path(step)
    return final.with_name(final.name + ".tmp")


def begin(run: RunDir, step: int) -> Path:
    """An empty staging folder for the checkpoint of `step`."""
    tmp = staging_path(run, step)
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "state").mkdir(parents=True)
    return tmp


def commit(run: RunDir, step: int) -> CheckpointRecord:
    """Swap the staged checkpoint in without ever being without one: the old folder is renamed
    aside, the new one renamed in, the folder fsynced, and only then the old one deleted.
    `RunDir.recover_checkpoints` puts an aside folder back if a kill lands between the renames."""
    tmp, final = staging_path(run, step), run.checkpoint_path(step)
    aside = final.with_name(final.name + ".old")
    _settle_tree(tmp)
    if final.exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    shutil.rmtree(aside, ignore_errors=True)
    return CheckpointRecord(step, final)
