"""`sdstudio export`: a trained checkpoint becomes a kohya file that loads elsewhere and
gives the same images as the adapter that was trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_helpers import add_adapters, save_checkpoint, write_run_toml
from sdstudio.cli import main
from sdstudio.core.lora.export import export_checkpoint
from sdstudio.core.runs import RunDir

PROMPT = "a photo of sks dog"


def _image(pipe, seed: int = 3):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=2, guidance_scale=5.0, generator=gen, output_type="np").images[0]


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A run whose step-10 checkpoint holds UNet (alpha 8) and text-encoder (alpha 2) LoRAs, rank 4."""
    import torch

    from sdstudio.core.models import load_pipeline

    torch.set_num_threads(1)
    pipe = load_pipeline(str(tiny_model_dir))
    unet_cfg, text_cfg = add_adapters(pipe, rank=4, unet_alpha=8.0, text_alpha=2.0)
    run = RunDir(tmp_path_factory.mktemp("runs") / "dog-run")
    save_checkpoint(pipe, run, 10, unet_cfg, text_cfg)
    write_run_toml(run, str(tiny_model_dir), rank=4, alpha=8.0, steps=10)
    return run, _image(pipe)


def test_export_loads_with_diffusers_and_gives_the_trained_images(trained, tiny_model_dir: Path, tmp_path: Path):
    import numpy as np

    from sdstudio.core.models import load_pipeline

    run, trained_image = trained
    out = export_checkpoint(run.path, out=tmp_path / "dog.safetensors", dtype="fp32")
    pipe = load_pipeline(str(tiny_model_dir))
    base_image = _image(pipe)
    pipe.load_lora_weights(str(out))
    assert np.abs(base_image - trained_image).max() > 1e-2  # the LoRA does change the image
    np.testing.assert_allclose(_image(pipe), trained_image, atol=2e-4)


def test_export_writes_kohya_keys_true_alpha_and_training_metadata(trained):
    from safetensors import safe_open

    run, _ = trained
    out = export_checkpoint(run.path)  # fp16, latest step, default place
    assert out == run.exports_dir / "dog-run-step10.safetensors"
    with safe_open(str(out), framework="pt") as fh:
        keys = list(fh.keys())
        meta = fh.metadata()
        unet_alpha = fh.get_tensor("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.alpha")
        te_alpha = fh.get_tensor("lora_te_text_model_encoder_layers_1_self_attn_q_proj.alpha")
        up = fh.get_tensor("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight")
    assert all(k.startswith(("lora_unet_", "lora_te_text_model_encoder_layers_")) for k in keys)
    assert len(keys) == 3 * (4 * 2 * 4 + 2 * 4)  # 4 transformer blocks x attn1/attn2 x q,k,v,out + 2 CLIP layers
    assert (unet_alpha.item(), te_alpha.item()) == (8.0, 2.0)
    assert str(up.dtype) == "torch.float16"
    assert meta["ss_network_dim"] == "4" and float(meta["ss_network_alpha"]) == 8.0
    assert meta["ss_steps"] == "10" and meta["ss_resolution"] == "(32, 32)"
    assert meta["ss_new_sd_model_hash"] == "ab" * 32 and meta["ss_sd_model_name"] == "tiny-sd"
    assert meta["ss_learning_rate"] == "0.0001" and meta["ss_num_train_images"] == "5"
    assert meta["ss_network_train_unet_only"] == "False" and meta["ss_sdstudio_version"]
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.hash_sha256"].startswith("0x") and meta["modelspec.resolution"] == "32x32"


def test_cli_export_checkpoint_folder_and_bad_step(trained, tmp_path: Path, capsys):
    run, _ = trained
    out = tmp_path / "cli.safetensors"
    assert main(["export", str(run.checkpoint_path(10)), "-o", str(out)]) == 0
    assert out.exists() and str(out) in capsys.readouterr().out
    assert main(["export", str(run.path), "--step", "7"]) == 2
    assert "no checkpoint at step 7 (have: 10)" in capsys.readouterr().err


def test_export_of_a_real_training_run(tiny_model_dir: Path, tmp_path: Path):
    """A 2-step run of the trainer (UNet + text-encoder LoRA, alpha != rank): the export gives the
    images of the checkpoint, and its metadata names the base model the run recorded."""
    import numpy as np
    from safetensors import safe_open

    from conftest import draw_shape_images, tiny_train_values
    from sdstudio.core.config import build_config
    from sdstudio.core.models import load_pipeline
    from sdstudio.core.training.trainer import train

    inst = tmp_path / "instance"
    draw_shape_images(inst, 2, (230, 30, 30))
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(inst),
                                         instance_prompt="a photo of sks dog", train_text_encoder=True, rank=4,
                                         lora_alpha=2.0, max_train_steps=2, validation_steps=10))
    run = train(cfg)
    out = export_checkpoint(run.path, dtype="fp32")
    images = []
    for weights in (run.checkpoint(2).weights, out):
        pipe = load_pipeline(str(tiny_model_dir))
        pipe.load_lora_weights(str(weights))
        images.append(_image(pipe))
    np.testing.assert_allclose(images[1], images[0], atol=2e-4)
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
        assert fh.get_tensor("lora_te_text_model_encoder_layers_0_self_attn_v_proj.alpha").item() == 2.0
    base = run.meta()["base_model"]
    assert meta["ss_sd_model_name"] == base["name"] and meta["ss_new_sd_model_hash"] == base["sha256"]
    assert meta["ss_steps"] == "2" and meta["ss_network_alpha"] == "2.0" and meta["ss_num_train_images"] == "2"
