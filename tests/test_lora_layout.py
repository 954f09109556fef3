"""Every key sdstudio exports lands on a module of the SD 1.5 single-file (LDM) layout that
A1111 and ComfyUI patch, with matching shapes, over the full-size SD 1.5 architecture
(the project's own SD 1.5 numbers, `sdstudio.demo.sd15_arch`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import LEGACY_SEED_LORA, needs_shared
from lora_helpers import sd15_lora_checkpoint, write_legacy_attn_procs_lora
from sdstudio.core.io.ldm_layout import text_encoder_module_map, unet_module_map
from sdstudio.core.lora.keys import path_from_kohya
from sdstudio.demo import sd15_arch


@pytest.fixture(scope="module")
def ldm():
    maps = {"unet": unet_module_map(sd15_arch.configs()["unet"]), "text_encoder": text_encoder_module_map("sd1", 12)}
    return maps, sd15_arch.ldm_shapes()


def kohya_modules_onto_ldm(path: Path, ldm) -> dict[str, str]:
    """kohya module -> LDM module; asserts each exists in SD 1.5 with the LoRA's shapes."""
    from safetensors import safe_open

    maps, shapes = ldm
    found = {}
    with safe_open(str(path), framework="pt") as fh:
        names = sorted({k.split(".")[0] for k in fh.keys()})
        for name in names:
            component, module = path_from_kohya(name)
            target = maps[component][module]
            weight = shapes[target + ".weight"]
            down = fh.get_slice(f"{name}.lora_down.weight").get_shape()
            up = fh.get_slice(f"{name}.lora_up.weight").get_shape()
            assert (up[0], down[1]) == weight[:2], name
            assert tuple(down[2:]) == weight[2:] and fh.get_slice(f"{name}.alpha").get_shape() == []
            found[name] = target
    return found


def test_known_a1111_names():
    """Names as A1111 resolves them (facts of the two layouts, not derived from our table)."""
    unet = unet_module_map(sd15_arch.configs()["unet"])
    te = text_encoder_module_map("sd1", 12)
    cases = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q":
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q",
        "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_out_0":
            "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_out.0",
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj":
            "model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.0.proj",
        "lora_unet_down_blocks_2_attentions_1_proj_in": "model.diffusion_model.input_blocks.8.1.proj_in",
        "lora_te_text_model_encoder_layers_11_self_attn_out_proj":
            "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.out_proj",
        "lora_te_text_model_encoder_layers_0_mlp_fc2": "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc2",
    }
    for name, expected in cases.items():
        component, module = path_from_kohya(name)
        assert (unet if component == "unet" else te)[module] == expected


def test_sd15_export_maps_every_key_onto_ldm_modules(tmp_path: Path, ldm):
    from sdstudio.core.lora.export import export_checkpoint
    from sdstudio.core.runs.run_dir import RunDir

    run = RunDir(tmp_path / "sd15-run")
    unet_targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
    sd15_lora_checkpoint(run, rank=4, alpha=8.0, unet_targets=unet_targets,
                         text_targets=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
    found = kohya_modules_onto_ldm(export_checkpoint(run.path), ldm)
    # 16 transformer blocks x (8 attention linears + ff in/out) + proj_in/out; 12 CLIP layers x 6
    assert len(found) == 16 * (8 + 2 + 2) + 12 * 6
    assert len(set(found.values())) == len(found)


def _check_legacy_conversion(source: Path, tmp_path: Path, ldm) -> None:
    from sdstudio.core.lora.convert import convert_file

    result = convert_file(source, tmp_path / "dog-kohya.safetensors", to="kohya")
    assert (result.source_format, result.modules, result.tensors) == ("attn_procs", 128, 384)
    assert result.ranks == [4] and result.alphas == [4.0]  # no alpha stored: scale 1, i.e. alpha = rank
    found = kohya_modules_onto_ldm(result.path, ldm)
    assert len(found) == 128
    assert all(".attn1.to_" in t or ".attn2.to_" in t for t in found.values())


def test_legacy_attn_procs_file_converts_with_all_128_modules_mapped(tmp_path: Path, ldm):
    """A file built here in the legacy layout: attn-procs keys, a pickle whose tensors claim cuda:0."""
    legacy = write_legacy_attn_procs_lora(tmp_path / "pytorch_lora_weights.bin")
    _check_legacy_conversion(legacy, tmp_path, ldm)


@needs_shared(LEGACY_SEED_LORA)
def test_real_legacy_seed_file_converts_with_all_128_modules_mapped(tmp_path: Path, ldm):
    _check_legacy_conversion(LEGACY_SEED_LORA, tmp_path, ldm)
