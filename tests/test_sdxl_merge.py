"""Streaming merges of SDXL models into one file in the SGM layout (what A1111 and ComfyUI load)."""

from __future__ import annotations

from pathlib import Path

import pytest

# SGM layout facts, written from the SDXL architecture (not from sdstudio's mapping): the UNet in
# LDM names with added-conditioning MLP `label_emb.0.{0,2}`; CLIP-L in Hugging Face names under
# embedders.0; OpenCLIP bigG under embedders.1 with fused q/k/v and a bare transposed projection.
# The tiny model: level 0 has no attention (input_blocks.1 resnet, .2 downsampler), level 1 has two
# transformer layers (input_blocks.3.1.transformer_blocks.{0,1}); text encoders of 2 layers, widths 32 and 48,
# the second projecting to 32 (the pooled embedding).
EXPECTED = {
    "model.diffusion_model.label_emb.0.0.weight": (32 * 4, 32 + 6 * 8),  # time embedding: 4x the first width
    "model.diffusion_model.label_emb.0.2.weight": (32 * 4, 32 * 4),
    "model.diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3),
    "model.diffusion_model.input_blocks.2.0.op.weight": (32, 32, 3, 3),
    "model.diffusion_model.input_blocks.3.1.transformer_blocks.1.attn2.to_k.weight": (64, 32 + 48),
    "model.diffusion_model.middle_block.1.transformer_blocks.1.ff.net.2.weight": (64, 256),
    "model.diffusion_model.output_blocks.1.2.conv.weight": (64, 64, 3, 3),  # upsampler after resnet+attention
    "first_stage_model.encoder.mid.attn_1.q.weight": (32, 32, 1, 1),
    "conditioner.embedders.0.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight": (32, 32),
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (32,),
    "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight": (3 * 48, 48),
    "conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc.weight": (96, 48),
    "conditioner.embedders.1.model.positional_embedding": (77, 48),
    "conditioner.embedders.1.model.text_projection": (48, 32),  # (width, projection): transposed,
    "conditioner.embedders.1.model.ln_final.weight": (48,),
}
SGM_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "conditioner.embedders.0.transformer.text_model.",
                "conditioner.embedders.1.model.")


@pytest.fixture(scope="module")
def sdxl_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sdstudio.demo.tiny import build_tiny_sdxl_pipeline

    return build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl-b") / "b", seed=1)


def _components(folder: Path) -> dict[str, dict]:
    from safetensors.torch import load_file

    return {c: load_file(str(folder / c / f"{'model' if c.startswith('text') else 'diffusion_pytorch_model'}.safetensors"))
            for c in ("unet", "vae", "text_encoder", "text_encoder_2")}


def test_weighted_sum_of_two_sdxl_models_is_one_sgm_file_diffusers_reads_back(tiny_sdxl_dir, sdxl_b, tmp_path):
    import torch
    from diffusers import StableDiffusionXLPipeline
    from safetensors import safe_open

    from sdstudio.core.merge.merger import merge_files
    from sdstudio.core.models import detect_family, resolve_base_model

    out = merge_files(tiny_sdxl_dir, tmp_path / "merged.safetensors", sdxl_b, method="weighted-sum",
                      multiplier=0.25, dtype="fp32")
    with safe_open(str(out), "pt") as fh:
        shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    for key, shape in EXPECTED.items():
        assert shapes.get(key) == shape, key
    assert all(k.startswith(SGM_PREFIXES) for k in shapes), [k for k in shapes if not k.startswith(SGM_PREFIXES)][:3]
    assert detect_family(shapes) == "sdxl" and resolve_base_model(str(out)).family == "sdxl"

    # diffusers' own single-file loader reads every tensor back where it belongs: A + 0.25 (B - A)
    pipe = StableDiffusionXLPipeline.from_single_file(str(out), config=str(tiny_sdxl_dir), add_watermarker=False)
    a, b = _components(tiny_sdxl_dir), _components(sdxl_b)
    for comp in ("unet", "vae", "text_encoder", "text_encoder_2"):
        got = getattr(pipe, comp).state_dict()
        for key, ta in a[comp].items():
            if key.endswith("position_ids"):
                continue
            name = key if key in got else key.removeprefix("text_model.")
            want = 0.75 * ta.float() + 0.25 * b[comp][key].float()
            assert torch.allclose(got[name].float(), want, atol=1e-6), f"{comp}.{key}"


def test_add_difference_and_folder_output_keep_the_sdxl_layout(tiny_sdxl_dir, sdxl_b, tmp_path):
    import torch
    from safetensors.torch import load_file

    from sdstudio.core.merge.merger import merge_files

    single = merge_files(tiny_sdxl_dir, tmp_path / "ws.safetensors", sdxl_b, multiplier=1.0, dtype="fp32")
    # A + 1.0 * (B - A) = B, written back as a diffusers SDXL folder
    folder = merge_files(tiny_sdxl_dir, tmp_path / "ad", single, tiny_sdxl_dir, method="add-difference",
                         multiplier=1.0, dtype="fp32", fmt="diffusers")
    got = load_file(str(folder / "text_encoder_2" / "model.safetensors"))
    want = load_file(str(sdxl_b / "text_encoder_2" / "model.safetensors"))
    assert got.keys() >= {k for k in want if not k.endswith("position_ids")}
    for key in ("text_projection.weight", "text_model.encoder.layers.1.self_attn.k_proj.weight"):
        assert torch.allclose(got[key], want[key], atol=1e-6), key
