"""Inputs for the merge tests: A1111 single files of tiny models and LoRA files in two formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

POS = "cond_stage_model.transformer.text_model.embeddings.position_ids"

UNET_TARGETS = ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
                "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0")
TEXT_TARGETS = ("text_model.encoder.layers.1.self_attn.v_proj",)


def folder_state(folder: Path) -> dict[str, dict[str, Any]]:
    from safetensors.torch import load_file

    return {"unet": load_file(folder / "unet/diffusion_pytorch_model.safetensors"),
            "vae": load_file(folder / "vae/diffusion_pytorch_model.safetensors"),
            "text_encoder": load_file(folder / "text_encoder/model.safetensors")}


def ldm_state(folder: Path) -> dict[str, Any]:
    from sdstudio.core.io.layouts import layout_of_folder
    from sdstudio.demo.ldm_files import diffusers_to_ldm

    return diffusers_to_ldm(folder_state(folder), layout_of_folder(folder))


def diffusers_reads(source: Path, config: Path | None = None) -> dict[str, Any]:
    """`component.key` -> fp32 tensor, as diffusers itself loads `source`: a diffusers folder through
    `from_pretrained`, a single file through `from_single_file` with the local `config` folder (no
    network). The reference the merge tests compare with, independent of sdstudio's own layout code."""
    import torch
    from diffusers import StableDiffusionPipeline

    if source.is_dir():
        pipe = StableDiffusionPipeline.from_pretrained(source, torch_dtype=torch.float32)
    else:
        pipe = StableDiffusionPipeline.from_single_file(str(source), config=str(config), local_files_only=True,
                                                        torch_dtype=torch.float32)
    return {f"{comp}.{key}": value for comp in ("unet", "vae", "text_encoder")
            for key, value in getattr(pipe, comp).state_dict().items() if value.is_floating_point()}


def write_single_file(folder: Path, out: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The diffusers folder as an A1111 .safetensors (with A1111's position_ids and a schedule buffer)."""
    import torch

    from sdstudio.core.io.atomic import save_safetensors

    sd = dict(ldm_state(folder))
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    sd["alphas_cumprod"] = torch.linspace(1, 0.01, 1000)
    if edit:
        edit(sd)
    save_safetensors(sd, out)
    return out


def lora_modules(seed: int = 0, rank: int = 2) -> dict[tuple[str, str], tuple[Any, Any]]:
    """(component, module) -> (down, up) for the tiny model (its targets are all 32 x 32 linears)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    mods = {}
    for comp, paths in (("unet", UNET_TARGETS), ("text_encoder", TEXT_TARGETS)):
        for path in paths:
            mods[(comp, path)] = (torch.randn(rank, 32, generator=g), torch.randn(32, rank, generator=g))
    return mods


def write_kohya_lora(out: Path, mods: dict[tuple[str, str], tuple[Any, Any]], alpha: float) -> Path:
    import torch
    from safetensors.torch import save_file

    sd = {}
    for (comp, path), (down, up) in mods.items():
        name = ("lora_unet_" if comp == "unet" else "lora_te_") + path.replace(".", "_")
        sd |= {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(alpha)}
    save_file(sd, str(out))
    return out


def write_peft_lora(out: Path, mods: dict[tuple[str, str], tuple[Any, Any]], alpha: float) -> Path:
    """What `save_lora_weights` writes: `unet.<path>.lora_A.weight` plus the LoraConfig in metadata."""
    from safetensors.torch import save_file

    sd = {}
    meta: dict[str, Any] = {}
    for (comp, path), (down, up) in mods.items():
        key = path.removeprefix("text_model.") if comp == "text_encoder" else path
        sd |= {f"{comp}.{key}.lora_A.weight": down.contiguous(), f"{comp}.{key}.lora_B.weight": up.contiguous()}
        meta |= {f"{comp}.r": int(down.shape[0]), f"{comp}.lora_alpha": alpha}
    save_file(sd, str(out), metadata={"lora_adapter_metadata": json.dumps(meta), "format": "pt"})
    return out


# Fixtures shared by the merge test modules (import them by name).

@pytest.fixture(scope="module")
def model_b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sdstudio.demo.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("merge-b") / "tiny-b", seed=1)


@pytest.fixture(scope="module")
def a_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    def extra(sd: dict) -> None:
        sd["model_ema.num_updates"] = torch.tensor(7)  # only in A: must be kept

    return write_single_file(tiny_model_dir, tmp_path_factory.mktemp("merge-a") / "a.safetensors", extra)


@pytest.fixture(scope="module")
def b_file(model_b_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    def edit(sd: dict) -> None:
        sd[POS] = torch.arange(77)[None] + 1  # never merged, whatever B holds
        sd["alphas_cumprod"] = torch.zeros(1000)

    return write_single_file(model_b_dir, tmp_path_factory.mktemp("merge-bf") / "b.safetensors", edit)
