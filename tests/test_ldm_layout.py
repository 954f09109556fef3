"""The diffusers <-> A1111/LDM single-file name mapping, checked on real shapes and a real round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdstudio.core.io.layouts import layout_of_folder
from sdstudio.core.io.ldm_layout import (
    LdmLayout,
    canonical_text_key,
    text_encoder_module_map,
    unet_module_map,
)
from sdstudio.demo.ldm_files import diffusers_to_ldm, ldm_to_diffusers

from conftest import SHARED, needs_shared
from sdstudio.demo import sd15_arch

SHARED_SD15 = SHARED / "sd15-config"  # the published SD 1.5 configs, when present beside the checkout


@pytest.fixture(scope="module")
def sd15(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of SD 1.5 component configs written from the project's own numbers."""
    return sd15_arch.write_config_folder(tmp_path_factory.mktemp("sd15-config"))


def _meta_components(root: Path) -> dict:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads((root / "unet/config.json").read_text()))
        vae = AutoencoderKL.from_config(json.loads((root / "vae/config.json").read_text()))
        text = CLIPTextModel(CLIPTextConfig(**json.loads((root / "text_encoder/config.json").read_text())))
    return {"unet": unet.state_dict(), "vae": vae.state_dict(), "text_encoder": text.state_dict()}


def _load_components(root: Path) -> dict:
    from safetensors.torch import load_file

    return {"unet": load_file(root / "unet/diffusion_pytorch_model.safetensors"),
            "vae": load_file(root / "vae/diffusion_pytorch_model.safetensors"),
            "text_encoder": load_file(root / "text_encoder/model.safetensors")}


def test_sd15_every_parameter_maps_and_diffusers_reads_it_back(sd15: Path) -> None:
    _every_parameter_maps_and_diffusers_reads_it_back(sd15)


@needs_shared(SHARED_SD15 / "unet" / "config.json")
def test_published_sd15_configs_map_the_same_and_match_our_numbers(sd15: Path) -> None:
    """The real SD 1.5 config files give the same tensors as the project's numbers, and map the same."""
    assert _meta_shapes(SHARED_SD15) == _meta_shapes(sd15)
    _every_parameter_maps_and_diffusers_reads_it_back(SHARED_SD15)


def _meta_shapes(root: Path) -> dict:
    return {c: {k: tuple(v.shape) for k, v in sd.items()} for c, sd in _meta_components(root).items()}


def _every_parameter_maps_and_diffusers_reads_it_back(root: Path) -> None:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    comps = _meta_components(root)
    layout = layout_of_folder(root)
    ldm = diffusers_to_ldm(comps, layout)
    assert len(ldm) == sum(len(sd) for sd in comps.values())
    # the well-known SD 1.5 names
    assert ldm["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"].shape == (320, 320)
    assert ldm["model.diffusion_model.output_blocks.2.1.conv.weight"].shape == (1280, 1280, 3, 3)
    assert ldm["model.diffusion_model.output_blocks.5.2.conv.weight"].shape == (1280, 1280, 3, 3)
    assert ldm["model.diffusion_model.input_blocks.3.0.op.weight"].shape == (320, 320, 3, 3)
    assert ldm["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight" in ldm
    # diffusers' own LDM reader turns our file back into exactly the model's names and shapes
    unet_cfg = json.loads((root / "unet/config.json").read_text())
    vae_cfg = json.loads((root / "vae/config.json").read_text())
    for theirs, ours in ((convert_ldm_unet_checkpoint(dict(ldm), unet_cfg), comps["unet"]),
                         (convert_ldm_vae_checkpoint(dict(ldm), vae_cfg), comps["vae"])):
        assert set(theirs) == set(ours)
        assert all(theirs[k].shape == ours[k].shape for k in ours)
    back, skipped = ldm_to_diffusers(ldm, layout)
    assert skipped == []
    for comp, sd in comps.items():
        ref = {canonical_text_key(k) if comp == "text_encoder" else k: v.shape for k, v in sd.items()}
        assert {k: v.shape for k, v in back[comp].items()} == ref


def test_module_maps_name_the_documented_examples() -> None:
    unet = unet_module_map(sd15_arch.configs()["unet"])
    assert unet["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"] == \
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q"
    assert unet["mid_block.resnets.0"] == "model.diffusion_model.middle_block.0"
    assert unet["up_blocks.3.resnets.2.conv_shortcut"] == "model.diffusion_model.output_blocks.11.0.skip_connection"
    assert unet["conv_in"] == "model.diffusion_model.input_blocks.0.0"
    text = text_encoder_module_map("sd1", 12)
    assert text["text_model.encoder.layers.3.self_attn.q_proj"] == \
        "cond_stage_model.transformer.text_model.encoder.layers.3.self_attn.q_proj"


def test_sd2_text_encoder_fuses_qkv_and_splits_it_back() -> None:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, vocab_size=100))
    sd = text.state_dict()
    layout = LdmLayout(sd15_arch.configs()["unet"], sd15_arch.configs()["vae"], "sd2", 2)
    ldm = diffusers_to_ldm({"text_encoder": sd}, layout)
    fused = ldm["cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight"]
    assert fused.shape == (96, 32)
    q = sd[[k for k in sd if k.endswith("layers.1.self_attn.q_proj.weight")][0]]
    assert torch.equal(fused[:32], q)
    assert ldm["cond_stage_model.model.positional_embedding"].shape == (77, 32)
    assert "cond_stage_model.model.ln_final.weight" in ldm
    back, _ = ldm_to_diffusers(ldm, layout)
    assert all(torch.equal(back["text_encoder"][canonical_text_key(k)], v) for k, v in sd.items())


def test_tiny_single_file_round_trip_generates_identical_images(tiny_model_dir: Path, tmp_path: Path) -> None:
    import numpy as np
    import torch

    from sdstudio.core.io.atomic import save_safetensors
    from sdstudio.core.models import load_pipeline

    ldm = diffusers_to_ldm(_load_components(tiny_model_dir), layout_of_folder(tiny_model_dir))
    single = tmp_path / "tiny.safetensors"
    save_safetensors(ldm, single)
    images = []
    for pipe in (load_pipeline(str(tiny_model_dir)), load_pipeline(str(single), config=str(tiny_model_dir))):
        out = pipe(prompt="a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                   output_type="np")
        images.append(np.asarray(out.images))
    assert images[0].std() > 0.01
    np.testing.assert_array_equal(images[0], images[1])
