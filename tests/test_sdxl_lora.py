"""SDXL LoRAs out of a run: kohya export (lora_unet_/lora_te1_/lora_te2_, true alpha, SDXL metadata)
checked against SDXL's module names, loaded by diffusers, converted both ways, fused into an SGM
file and previewed live."""

from __future__ import annotations

import pytest

from conftest import tiny_train_values


def sdxl_module_names() -> set[str]:
    """kohya names of every attention projection of the tiny SDXL model, written from the
    architecture: attention only below the top level (down_blocks.1, the mid block and
    up_blocks.0), two transformer layers each, self- and cross-attention with to_q/k/v/out.0;
    CLIP-L (te1) and OpenCLIP bigG (te2) with two layers of q/k/v/out projections each."""
    holders = ["down_blocks_1_attentions_0", "mid_block_attentions_0", "up_blocks_0_attentions_0",
               "up_blocks_0_attentions_1"]
    names = {f"lora_unet_{h}_transformer_blocks_{t}_{a}_{p}" for h in holders for t in (0, 1)
             for a in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v", "to_out_0")}
    # CLIP-L (te1) is read at its penultimate layer: its last layer (1) is not trained
    for te, layers in (("te1", (0,)), ("te2", (0, 1))):
        names |= {f"lora_{te}_text_model_encoder_layers_{i}_self_attn_{p}_proj" for i in layers for p in "qkv"}
        names |= {f"lora_{te}_text_model_encoder_layers_{i}_self_attn_out_proj" for i in layers}
    return names


@pytest.fixture(scope="module")
def sdxl_run(tiny_sdxl_dir, tmp_path_factory):
    from sdstudio.core.config import build_config
    from sdstudio.core.training.trainer import train
    from test_buckets import mixed_aspect_folder

    root = tmp_path_factory.mktemp("sdxl-lora")
    folder = mixed_aspect_folder(root / "mixed")
    cfg = build_config(tiny_train_values(tiny_sdxl_dir, root / "run", train_data_dir=str(folder), enable_bucket=True,
                                         bucket_reso_steps=8, train_text_encoder=True, rank=4, lora_alpha=8,
                                         learning_rate=5e-2, max_train_steps=2, checkpointing_steps=2,
                                         validation_steps=100))
    return train(cfg).path


def _picture(pipe, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return pipe("a red box wide", num_inference_steps=2, height=32, width=32, generator=g, output_type="pt").images


def test_kohya_export_names_every_sdxl_module_with_true_alpha_and_sdxl_metadata(sdxl_run, tmp_path):
    from safetensors import safe_open

    from sdstudio.core.lora.export import export_checkpoint

    out = export_checkpoint(sdxl_run, out=tmp_path / "xl.safetensors", dtype="fp32")
    with safe_open(str(out), "pt") as fh:
        keys = set(fh.keys())
        meta = fh.metadata()
        alphas = {k: float(fh.get_tensor(k)) for k in keys if k.endswith(".alpha")}
    modules = {k.split(".")[0] for k in keys}
    assert modules == sdxl_module_names()
    for m in modules:
        assert {f"{m}.lora_down.weight", f"{m}.lora_up.weight", f"{m}.alpha"} <= keys
    assert set(alphas.values()) == {8.0}  # the true alpha, not the rank
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "8.0"
    assert (meta["ss_enable_bucket"], meta["ss_min_bucket_reso"], meta["ss_max_bucket_reso"]) == ("True", "16", "64")


def test_the_export_loads_in_diffusers_and_draws_what_the_checkpoint_draws(sdxl_run, tiny_sdxl_dir, tmp_path):
    import torch
    from diffusers import StableDiffusionXLPipeline

    from sdstudio.core.lora.export import export_checkpoint
    from sdstudio.core.runs.run_dir import RunDir

    out = export_checkpoint(sdxl_run, out=tmp_path / "xl.safetensors", dtype="fp32")
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    before = _picture(pipe)
    pipe.load_lora_weights(str(out), adapter_name="kohya")
    with_export = _picture(pipe)
    assert (with_export - before).abs().max() > 1e-2  # the LoRA changes the picture
    pipe.unload_lora_weights()
    pipe.load_lora_weights(str(RunDir(sdxl_run).checkpoint(2).path), weight_name="pytorch_lora_weights.safetensors")
    assert torch.allclose(_picture(pipe), with_export, atol=1e-4)  # same modules, same alpha


def test_convert_sdxl_kohya_to_diffusers_and_back_keeps_every_tensor(sdxl_run, tmp_path):
    import torch
    from safetensors.torch import load_file

    from sdstudio.core.lora.export import export_checkpoint
    from sdstudio.core.lora.formats import read_lora_file, save_lora_file

    kohya = export_checkpoint(sdxl_run, out=tmp_path / "xl.safetensors", dtype="fp32")
    weights = read_lora_file(kohya)
    assert set(weights.components()) == {"unet", "text_encoder", "text_encoder_2"}
    peft = save_lora_file(weights, tmp_path / "peft.safetensors", fmt="diffusers")
    assert any(k.startswith("text_encoder_2.text_model.") for k in load_file(str(peft)))
    back = save_lora_file(read_lora_file(peft), tmp_path / "back.safetensors", fmt="kohya")
    a, b = load_file(str(kohya)), load_file(str(back))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_lora_fuse_into_an_sgm_file_and_the_live_preview_agree(sdxl_run, tiny_sdxl_dir, tmp_path):
    import torch
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import load_file

    from sdstudio.core.lora.export import export_checkpoint
    from sdstudio.core.lora.formats import read_lora_file
    from sdstudio.core.merge.merger import merge_files
    from sdstudio.core.merge.preview import PreviewMerger

    lora = export_checkpoint(sdxl_run, out=tmp_path / "xl.safetensors", dtype="fp32")
    fused = load_file(str(merge_files(tiny_sdxl_dir, tmp_path / "fused.safetensors", loras=[(str(lora), 0.5)],
                                      dtype="fp32")))
    base_te2 = load_file(str(tiny_sdxl_dir / "text_encoder_2" / "model.safetensors"))
    delta_q = read_lora_file(lora).modules[("text_encoder_2", "text_model.encoder.layers.1.self_attn.q_proj")].delta()
    in_proj = fused["conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight"]
    want_q = base_te2["text_model.encoder.layers.1.self_attn.q_proj.weight"] + 0.5 * delta_q
    assert torch.allclose(in_proj[:48], want_q, atol=1e-6)  # q is the first third of the fused tensor

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir, add_watermarker=False)
    preview = PreviewMerger(pipe, loras=[(str(lora), 1.0)])
    preview.apply(0.5)
    live = pipe.text_encoder_2.state_dict()["text_model.encoder.layers.1.self_attn.q_proj.weight"]
    assert torch.allclose(live, want_q, atol=1e-6)
    key = "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k.weight"
    ldm = "model.diffusion_model.input_blocks.3.1.transformer_blocks.1.attn2.to_k.weight"
    assert torch.allclose(pipe.unet.state_dict()[key], fused[ldm], atol=1e-6)
    preview.restore()
    assert torch.equal(pipe.text_encoder_2.state_dict()["text_model.encoder.layers.1.self_attn.q_proj.weight"],
                       base_te2["text_model.encoder.layers.1.self_attn.q_proj.weight"])


def test_generate_with_sdxl_and_a_lora_at_two_scales_makes_a_grid(sdxl_run, tiny_sdxl_dir, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from sdstudio.cli import main
    from sdstudio.core.lora.export import export_checkpoint

    lora = export_checkpoint(sdxl_run, out=tmp_path / "xl.safetensors", dtype="fp16")
    off = tmp_path / "xloff.safetensors"
    off.write_bytes(lora.read_bytes())
    out = tmp_path / "out"
    rc = main(["generate", "--model", str(tiny_sdxl_dir), "--lora", f"{off}:0", "--lora", f"{lora}:1.0",
               "--prompt", "a red box wide", "--seeds", "1-2", "--steps", "2", "-o", str(out), "--grid"])
    assert rc == 0, capsys.readouterr().err
    pngs = sorted(out.glob("*.png"))
    assert (out / "grid.png") in pngs and len(pngs) == 5  # (LoRA at 0, LoRA at 1) x 2 seeds + the grid
    first = [p for p in pngs if p.name.startswith("00") and "seed1" in p.name]
    second = [p for p in pngs if p.name.startswith("01") and "seed1" in p.name]
    params = Image.open(second[0]).text["parameters"]
    assert "<lora:xl:1>" in params or "<lora:xl:1.0>" in params, params
    assert "Size: 32x32" in params
    a = np.asarray(Image.open(first[0]), dtype=np.int16)
    b = np.asarray(Image.open(second[0]), dtype=np.int16)
    assert np.abs(a - b).max() > 0  # the LoRA changes the SDXL picture


def test_sd_scripts_sdxl_loras_with_sgm_unet_names_read_as_diffusers_modules(tmp_path):
    """kohya's sd-scripts names SDXL UNet layers in the SGM layout; SDXL base facts: level 0 has no
    attention (input_blocks 1-2, downsampler 3), level 1 input_blocks 4-5, level 2 input_blocks 7-8
    with 10 transformer layers; output_blocks 0-2 and 3-5 hold attention, three per level."""
    import torch
    from safetensors.torch import load_file, save_file

    from sdstudio.core.lora.formats import read_lora_file, save_lora_file

    facts = {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
        "lora_unet_input_blocks_8_1_transformer_blocks_9_attn2_to_k": "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k",
        "lora_unet_middle_block_1_transformer_blocks_0_attn1_to_out_0": "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0",
        "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_v": "up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v",
        "lora_unet_output_blocks_5_1_proj_out": "up_blocks.1.attentions.2.proj_out",
    }
    sd = {}
    for name in [*facts, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
                 "lora_te2_text_model_encoder_layers_31_mlp_fc1"]:
        sd[f"{name}.lora_down.weight"] = torch.randn(4, 16)
        sd[f"{name}.lora_up.weight"] = torch.randn(16, 4)
        sd[f"{name}.alpha"] = torch.tensor(2.0)
    save_file(sd, str(tmp_path / "sd-scripts.safetensors"))
    weights = read_lora_file(tmp_path / "sd-scripts.safetensors")
    assert {p for c, p in weights.modules if c == "unet"} == set(facts.values())
    assert ("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj") in weights.modules
    assert ("text_encoder_2", "text_model.encoder.layers.31.mlp.fc1") in weights.modules
    assert weights.alphas() == {2.0}
    out = load_file(str(save_lora_file(weights, tmp_path / "peft.safetensors", fmt="diffusers")))
    assert f"unet.{facts['lora_unet_output_blocks_5_1_proj_out']}.lora_A.weight" in out
    assert "text_encoder_2.text_model.encoder.layers.31.mlp.fc1.lora_B.weight" in out
