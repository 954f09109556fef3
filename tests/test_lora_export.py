"""`sdstudio export`: a checkpoint the trainer wrote becomes a kohya file that loads elsewhere and
gives the same images as the adapter that was trained."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import TRAINED_ALPHA, TRAINED_RANK
from sdstudio.cli import main
from sdstudio.core.lora.export import export_checkpoint
from sdstudio.core.runs.run_dir import RunDir

PROMPT = "a photo of sks dog"


def _image(pipe, seed: int = 3):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=2, guidance_scale=5.0, generator=gen, output_type="np").images[0]


@pytest.fixture(scope="module")
def trained(trained_run, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the real run (exports go into it), and the image its step-4 adapter gives while still
    a peft adapter: restored from the trainer's own resume record (`state/lora_peft.safetensors`,
    peft names), not from any LoRA file."""
    import shutil

    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    from sdstudio.core.models import load_pipeline
    from sdstudio.core.training.checkpoint import TEXT_ENCODER_TARGETS, UNET_TARGETS, lora_config

    torch.set_num_threads(1)
    pipe = load_pipeline(str(tiny_model_dir))
    tensors = load_file(str(trained_run.checkpoint(4).path / "state" / "lora_peft.safetensors"))
    for name, targets in (("unet", UNET_TARGETS), ("text_encoder", TEXT_ENCODER_TARGETS)):
        model = getattr(pipe, name)
        model.add_adapter(lora_config(TRAINED_RANK, TRAINED_ALPHA, targets))
        result = set_peft_model_state_dict(model, {k.removeprefix(f"{name}."): v for k, v in tensors.items()
                                                   if k.startswith(f"{name}.")})
        assert not getattr(result, "unexpected_keys", None)
    run = RunDir(shutil.copytree(trained_run.path, tmp_path_factory.mktemp("export") / trained_run.path.name))
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


def test_export_writes_kohya_keys_true_alpha_and_training_metadata(trained, tiny_model_dir: Path):
    """Metadata from what the trainer recorded: the base model's name and the hash of its UNet
    weights (hashed here), the run's steps, learning rate, resolution and image count."""
    from safetensors import safe_open

    run, _ = trained
    out = export_checkpoint(run.path)  # fp16, latest step, default place
    assert out == run.exports_dir / "shapes-step4.safetensors"
    with safe_open(str(out), framework="pt") as fh:
        keys = list(fh.keys())
        meta = fh.metadata()
        unet_alpha = fh.get_tensor("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.alpha")
        te_alpha = fh.get_tensor("lora_te_text_model_encoder_layers_1_self_attn_q_proj.alpha")
        up = fh.get_tensor("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight")
    assert all(k.startswith(("lora_unet_", "lora_te_text_model_encoder_layers_")) for k in keys)
    assert len(keys) == 3 * (4 * 2 * 4 + 2 * 4)  # 4 transformer blocks x attn1/attn2 x q,k,v,out + 2 CLIP layers
    assert (unet_alpha.item(), te_alpha.item()) == (TRAINED_ALPHA, TRAINED_ALPHA) and TRAINED_ALPHA != TRAINED_RANK
    assert str(up.dtype) == "torch.float16"
    assert meta["ss_network_dim"] == str(TRAINED_RANK) and float(meta["ss_network_alpha"]) == TRAINED_ALPHA
    assert meta["ss_steps"] == "4" and meta["ss_resolution"] == "(32, 32)"
    unet_weights = tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors"
    assert meta["ss_new_sd_model_hash"] == hashlib.sha256(unet_weights.read_bytes()).hexdigest()
    assert meta["ss_sd_model_name"] == "tiny-sd"
    assert meta["ss_learning_rate"] == "0.01" and meta["ss_num_train_images"] == "4"
    assert meta["ss_network_train_unet_only"] == "False" and meta["ss_sdstudio_version"]
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.hash_sha256"].startswith("0x") and meta["modelspec.resolution"] == "32x32"


def test_cli_export_checkpoint_folder_and_bad_step(trained, tiny_model_dir: Path, tmp_path: Path, capsys):
    """A checkpoint folder exports that step (step 2 gives step 2's pictures); a missing step is named."""
    import numpy as np

    from sdstudio.core.models import load_pipeline

    run, _ = trained
    out = tmp_path / "cli.safetensors"
    assert main(["export", str(run.checkpoint_path(2)), "-o", str(out), "--dtype", "fp32"]) == 0
    assert out.exists() and str(out) in capsys.readouterr().out
    images = []
    for weights in (run.checkpoint(2).weights, out):
        pipe = load_pipeline(str(tiny_model_dir))
        pipe.load_lora_weights(str(weights))
        images.append(_image(pipe))
    np.testing.assert_allclose(images[1], images[0], atol=2e-4)
    assert main(["export", str(run.path), "--step", "7"]) == 2
    assert "no checkpoint at step 7 (have: 2, 4)" in capsys.readouterr().err


def test_cli_export_refuses_to_replace_an_export_without_overwrite(trained, capsys):
    """The default place too (where `export --best` writes): an existing file is kept unless --overwrite."""
    run, _ = trained
    target = run.exports_dir / f"{run.name}-step2.safetensors"
    assert main(["export", str(run.path), "--step", "2", "--dtype", "fp32"]) == 0
    before = target.read_bytes()
    assert main(["export", str(run.path), "--step", "2"]) == 2
    assert f"{target}: already exists (pass --overwrite to replace it)" in capsys.readouterr().err
    assert target.read_bytes() == before  # the fp32 file is still there
    assert main(["export", str(run.path), "--step", "2", "--overwrite"]) == 0
    assert target.read_bytes() != before  # now the fp16 one
