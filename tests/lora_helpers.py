"""LoRA helpers for tests and `benchmarks/lora_export.py`: adapters on a loaded pipeline, and an
SD 1.5-size checkpoint written by the trainer's own checkpoint writer.

Checkpoints of the tiny model come from real training runs (the `trained_run` fixture in
conftest.py); only the SD 1.5-size case, which no CPU can train, is assembled here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdstudio.core.runs.run_dir import RunDir

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def add_adapters(pipe: Any, rank: int = 4, unet_alpha: float = 8.0, text_alpha: float | None = 2.0,
                 seed: int = 0) -> tuple[Any, Any]:
    """Add peft LoRA adapters (alpha != rank) with random non-zero B, as if trained."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    unet_cfg = LoraConfig(r=rank, lora_alpha=unet_alpha, init_lora_weights="gaussian", target_modules=UNET_TARGETS)
    pipe.unet.add_adapter(unet_cfg)
    text_cfg = None
    if text_alpha is not None:
        text_cfg = LoraConfig(r=rank, lora_alpha=text_alpha, init_lora_weights="gaussian", target_modules=TEXT_TARGETS)
        inject_adapter_in_model(text_cfg, pipe.text_encoder)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in (pipe.unet, pipe.text_encoder):
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return unet_cfg, text_cfg


def _realise_lora(model: Any, gen: Any) -> list[Any]:
    """Replace the meta-device LoRA parameters of `model` by small random CPU tensors."""
    import torch

    params = []
    for module in model.modules():
        for sub_name in ("lora_A", "lora_B"):
            layers = getattr(module, sub_name, None)
            if not isinstance(layers, torch.nn.ModuleDict):
                continue
            for layer in layers.values():
                weight = torch.nn.Parameter(torch.randn(layer.weight.shape, generator=gen) * 0.01)
                layer.weight = weight
                params.append(weight)
    return params


def sd15_lora_checkpoint(run: RunDir, step: int = 10, rank: int = 4, alpha: float = 8.0,
                         unet_targets: list[str] = UNET_TARGETS, text_targets: list[str] | None = TEXT_TARGETS) -> Path:
    """An SD 1.5-size LoRA checkpoint, written by the trainer's checkpoint writer: peft adapters on
    meta-device SD 1.5 models (the project's own numbers, `sdstudio.demo.sd15_arch`) whose LoRA
    tensors alone are made real (random), so no base weights and no memory are needed."""
    import torch

    from sdstudio.core.training import checkpoint
    from sdstudio.demo import sd15_arch

    gen = torch.Generator().manual_seed(0)
    models = sd15_arch.meta_models()
    for name, targets in (("unet", unet_targets), ("text_encoder", text_targets)):
        if targets:
            models[name].add_adapter(checkpoint.lora_config(rank, alpha, targets))
            _realise_lora(models[name], gen)
    staged = checkpoint.begin(run, step)
    trained = {"unet": models["unet"], **({"text_encoder": models["text_encoder"]} if text_targets else {})}
    checkpoint.write_lora_weights(staged, trained)
    record = checkpoint.commit(run, step)
    config = {"pretrained_model_name_or_path": "stable-diffusion-v1-5", "method": "dreambooth",
              "instance_prompt": "a photo of sks dog", "resolution": 512, "max_train_steps": step,
              "learning_rate": 1e-4, "lr_scheduler": "constant", "rank": rank, "lora_alpha": alpha,
              "train_text_encoder": text_targets is not None, "train_batch_size": 1, "seed": 0}
    run.write_config(config, {"version": "0.1.0", "dataset_images": 5,  # the [sdstudio] table as the trainer writes it
                              "base_model": {"name": "stable-diffusion-v1-5", "kind": "folder", "family": "sd1"}})
    return record.path


LEGACY_PROCESSOR_LINEARS = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"}


def write_legacy_attn_procs_lora(path: Path, rank: int = 4, seed: int = 0) -> Path:
    """A LoRA in the legacy diffusers attn-procs layout, as old training scripts saved it:
    `...attn1.processor.to_q_lora.down.weight` keys for every attention of the SD 1.5 UNet,
    fp32, in a torch.save pickle whose tensors claim a CUDA location (they were saved from the
    GPU). torch.save on this machine records "cpu", so the location in the pickle is rewritten."""
    import io
    import zipfile

    import torch

    from sdstudio.demo import sd15_arch

    gen = torch.Generator().manual_seed(seed)
    unet = sd15_arch.meta_models()["unet"]
    tensors = {}
    for name, module in unet.named_modules():
        if not name.endswith((".attn1", ".attn2")):
            continue
        for short, linear in LEGACY_PROCESSOR_LINEARS.items():
            out_f, in_f = module.get_submodule(linear).weight.shape
            prefix = f"{name}.processor.{short}_lora"
            tensors[f"{prefix}.down.weight"] = torch.randn(rank, in_f, generator=gen) / rank
            tensors[f"{prefix}.up.weight"] = torch.randn(out_f, rank, generator=gen) * 0.01
    buf = io.BytesIO()
    torch.save(tensors, buf)
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"  # BINUNICODE: length-prefixed UTF-8
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                assert cpu in data, "torch.save no longer writes the location as expected"
                data = data.replace(cpu, cuda)
            dst.writestr(info.filename, data)
    return path


def pickle_storage_locations(path: Path) -> set[str]:
    """The device locations a torch.save zip file records for its storages (read without unpickling)."""
    import pickletools
    import zipfile

    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
    strings = [arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)]
    return {s for s in strings if s == "cpu" or s.startswith("cuda")}
