"""`sdstudio export` of a full fine-tune: the whole model as one A1111/ComfyUI file (LDM layout for SD,
SGM for SDXL) that diffusers' own `from_single_file` reads back as the checkpoint's weights, or as
a diffusers folder; and the errors that say what to do instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from full_helpers import component_state, write_full_run
from sdstudio.cli import main
from sdstudio.core.full.export import export_full_checkpoint

LDM_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model.")
SGM_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "conditioner.embedders.0.transformer.text_model.",
                "conditioner.embedders.1.model.")


@pytest.fixture(scope="module")
def sd_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A full run of the tiny SD model: UNet and text encoder trained, EMA kept, steps 2 and 4."""
    return write_full_run(tiny_model_dir, tmp_path_factory.mktemp("full-sd") / "full-sd")


@pytest.fixture(scope="module")
def sdxl_run(tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A full run of the tiny SDXL model with both text encoders trained, EMA kept."""
    return write_full_run(tiny_sdxl_dir, tmp_path_factory.mktemp("full-sdxl") / "full-sdxl",
                          components=("unet", "text_encoder", "text_encoder_2"))


def _keys(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}


def _max_diff(got: dict, want: dict, rounding=None) -> float:
    """Largest difference over `want`'s tensors (transformers 5 may drop the `text_model.` prefix)."""
    worst = 0.0
    for key, w in want.items():
        if key.endswith("position_ids"):
            continue
        g = got[key] if key in got else got[key.removeprefix("text_model.")]
        w = w.to(rounding).float() if rounding is not None else w.float()
        worst = max(worst, (g.float() - w).abs().max().item())
    return worst


def test_default_export_is_an_fp16_ldm_file_of_the_ema_weights_that_from_single_file_reads(sd_run, tiny_model_dir,
                                                                                           capsys):
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    from sdstudio.core.io.layouts import layout_of_folder
    from sdstudio.core.models import detect_family, family_from_keys
    from sdstudio.demo.ldm_files import diffusers_to_ldm
    from merge_helpers import folder_state

    assert main(["export", str(sd_run.path)]) == 0
    out = sd_run.exports_dir / "full-sd-step4-ema.safetensors"
    assert f"wrote {out}" in capsys.readouterr().out
    shapes = _keys(out)
    assert detect_family(shapes) == "sd1" and family_from_keys(shapes, str(out)) == "sd1"
    assert all(k.startswith(LDM_PREFIXES) for k in shapes)
    # the whole model: every tensor of the base in its single-file form, no more, no less
    base_ldm = diffusers_to_ldm(folder_state(tiny_model_dir), layout_of_folder(tiny_model_dir))
    assert set(shapes) == {k for k in base_ldm if not k.endswith("position_ids")}
    with safe_open(str(out), "pt") as fh:
        meta = fh.metadata()
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"F16"}
    record = json.loads(meta["sdstudio_export"])
    assert (record["step"], record["ema"], record["dtype"], record["base_model"]["name"]) == (4, True, "fp16", "tiny-sd")
    assert meta["modelspec.architecture"] == "stable-diffusion-v1"

    pipe = StableDiffusionPipeline.from_single_file(str(out), config=str(tiny_model_dir), local_files_only=True,
                                                    safety_checker=None, requires_safety_checker=False)
    ckpt = sd_run.checkpoint(4).path
    for comp in ("unet", "text_encoder"):
        got, ema = getattr(pipe, comp).state_dict(), component_state(ckpt / "ema" / comp, comp)
        assert _max_diff(got, ema, torch.float16) == 0.0, comp  # the EMA weights, rounded to fp16 once
        assert _max_diff(got, ema) < 1e-3, comp
        assert _max_diff(got, component_state(ckpt / "model" / comp, comp)) > 1e-2, comp  # not the raw weights
        assert _max_diff(got, component_state(tiny_model_dir / comp, comp)) > 1e-2, comp  # nor the base's
    assert _max_diff(pipe.vae.state_dict(), component_state_vae(tiny_model_dir), torch.float16) == 0.0  # base VAE


def component_state_vae(folder: Path) -> dict:
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(str(folder / "vae")).state_dict()


def test_sdxl_export_no_ema_fp32_is_an_sgm_file_with_the_trained_weights(sdxl_run, tiny_sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    from sdstudio.core.models import detect_family, resolve_base_model

    out = export_full_checkpoint(sdxl_run.path, step=2, ema=False, dtype="fp32")
    assert out == sdxl_run.exports_dir / "full-sdxl-step2-fp32.safetensors"
    shapes = _keys(out)
    assert detect_family(shapes) == "sdxl" and resolve_base_model(str(out)).family == "sdxl"
    assert all(k.startswith(SGM_PREFIXES) for k in shapes)
    assert shapes["conditioner.embedders.1.model.text_projection"] == (48, 32)  # OpenCLIP's transposed projection
    pipe = StableDiffusionXLPipeline.from_single_file(str(out), config=str(tiny_sdxl_dir), add_watermarker=False)
    ckpt = sdxl_run.checkpoint(2).path
    for comp in ("unet", "text_encoder", "text_encoder_2"):
        assert _max_diff(getattr(pipe, comp).state_dict(), component_state(ckpt / "model" / comp, comp)) == 0.0, comp


def test_diffusers_format_is_a_pipeline_folder_of_the_checkpoint(sd_run, tmp_path):
    from diffusers import StableDiffusionPipeline

    out = export_full_checkpoint(sd_run.checkpoint_path(2), fmt="diffusers", dtype="fp32", out=tmp_path / "ft")
    pipe = StableDiffusionPipeline.from_pretrained(str(out), local_files_only=True)
    ckpt = sd_run.checkpoint(2).path
    for comp in ("unet", "text_encoder"):
        assert _max_diff(getattr(pipe, comp).state_dict(), component_state(ckpt / "ema" / comp, comp)) == 0.0, comp


def test_bad_export_requests_say_what_to_do(sd_run, tiny_model_dir, tmp_path, capsys):
    no_ema = write_full_run(tiny_model_dir, tmp_path / "no-ema", steps=(1,), ema=False, components=("unet",))
    cases = [
        (["export", str(sd_run.path), "--step", "3"], "no checkpoint at step 3 (have: 2, 4)"),
        (["export", str(no_ema.path), "--ema"], "has no EMA weights (the run did not use use_ema); drop --ema"),
        (["export", str(sd_run.checkpoint_path(2)), "--step", "2"], "--step applies to a run folder"),
        (["export", str(sd_run.path), "-o", str(tmp_path / "x.ckpt")], "give -o a name ending in .safetensors"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):
        main(["export", str(sd_run.path), "--dtype", "fp8"])
    assert "invalid choice: 'fp8'" in capsys.readouterr().err
    with pytest.raises(Exception, match="--format 'ckpt': expected one of single-file, diffusers"):
        export_full_checkpoint(sd_run.path, fmt="ckpt")
    # without EMA the default is the trained weights, and the file says so in its name
    assert export_full_checkpoint(no_ema.path).name == "no-ema-step1.safetensors"


def test_a_run_trained_from_a_hub_id_exports_from_the_hub_cache(sd_run, tiny_model_dir, tmp_path, monkeypatch):
    """Most real runs name their base by hub id: the export reads it from the local hub cache, offline."""
    import shutil

    from sdstudio.core.runs.run_dir import RunDir

    cache = tmp_path / "hub"
    snapshot = cache / "models--sdstudio-test--tiny-sd" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_model_dir, snapshot)
    (cache / "models--sdstudio-test--tiny-sd" / "refs").mkdir()
    (cache / "models--sdstudio-test--tiny-sd" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = RunDir(shutil.copytree(sd_run.path, tmp_path / "from-hub"))
    run.write_config({**run.config(), "pretrained_model_name_or_path": "sdstudio-test/tiny-sd"},
                     {**run.meta(), "base_model": {"name": "sdstudio-test/tiny-sd", "kind": "hub", "family": "sd1"}})
    out = export_full_checkpoint(run.path, dtype="fp32")
    assert _keys(out) == _keys(export_full_checkpoint(sd_run.path, dtype="fp32"))
    shutil.rmtree(cache)
    with pytest.raises(Exception, match="sdstudio-test/tiny-sd: the run's base model is not in the local hub cache"):
        export_full_checkpoint(run.path, dtype="fp32", overwrite=True)


def test_a_trained_full_run_exports_what_its_trainer_wrote(tiny_model_dir, instance_dir, tmp_path):
    """The trainer's own checkpoint (not a hand-made one) goes through export and back through
    from_single_file: the file holds the EMA weights the trainer saved, UNet and text encoder."""
    import torch
    from diffusers import StableDiffusionPipeline

    from conftest import tiny_train_values
    from sdstudio.core.config import build_config
    from sdstudio.core.training.trainer import train

    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="a photo of sks dog", training_method="full",
                                         train_text_encoder=True, use_ema=True, ema_decay=0.5, max_train_steps=2,
                                         num_validation_images=0, validation_loss=False))
    run = train(cfg)
    assert main(["export", str(run.path)]) == 0
    out = next(run.exports_dir.glob("*-step2-ema.safetensors"))
    pipe = StableDiffusionPipeline.from_single_file(str(out), config=str(tiny_model_dir), local_files_only=True,
                                                    safety_checker=None, requires_safety_checker=False)
    ckpt = run.checkpoint(2).path
    for comp in ("unet", "text_encoder"):
        got = getattr(pipe, comp).state_dict()
        assert _max_diff(got, component_state(ckpt / "ema" / comp, comp), torch.float16) == 0.0, comp
        assert _max_diff(got, component_state(tiny_model_dir / comp, comp)) > 0, comp  # trained, not the base
