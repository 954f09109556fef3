"""A full fine-tune's checkpoint taken like any model: named as RUN, RUN@STEP or its folder, loaded by
Generate, merged, re-sampled by `sdstudio score`, exported by the Checkpoints screen's e key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from full_helpers import component_state, write_full_run

PROMPT = "a photo of sks dog"


@pytest.fixture(scope="module")
def full_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Tiny SD, UNet + text encoder trained, EMA kept, checkpoints at steps 2 and 4, sampled at 16 px
    in 2 steps on one seed."""
    return write_full_run(tiny_model_dir, tmp_path_factory.mktemp("full-models") / "ft", validation_steps=2,
                          num_validation_images=1, validation_num_inference_steps=2, resolution=16,
                          validation_prompts=[PROMPT])


def _same(module, want: dict) -> bool:
    got = module.state_dict()
    return all(torch_equal(got[k if k in got else k.removeprefix("text_model.")], v) for k, v in want.items()
               if not k.endswith("position_ids"))


def torch_equal(a, b) -> bool:
    return bool((a.float() == b.float()).all())


def test_checkpoint_names_resolve_and_load_the_chosen_weights(full_run, tiny_model_dir, one_torch_thread):
    from sdstudio.core.catalog import run_models
    from sdstudio.core.models import load_pipeline, locate_model, resolve_base_model

    step2, step4 = full_run.checkpoint(2).path, full_run.checkpoint(4).path
    named = {str(full_run.path): step4 / "ema", f"{full_run.path}@2": step2 / "ema", str(step2): step2 / "ema",
             str(step2 / "model"): step2 / "model"}
    for spec, weights in named.items():
        base = resolve_base_model(spec)
        assert (base.kind, base.family, Path(base.location)) == ("full_checkpoint", "sd1", weights.resolve()), spec
    assert resolve_base_model(str(step2 / "model")).name == "ft-step2"
    pipe = load_pipeline(str(step2 / "model"))
    assert _same(pipe.unet, component_state(step2 / "model" / "unet", "unet"))
    assert _same(pipe.text_encoder, component_state(step2 / "model" / "text_encoder", "text_encoder"))
    assert _same(pipe.vae, load_pipeline(str(tiny_model_dir)).vae.state_dict())  # untrained: the base's
    # the pickers offer each checkpoint as a model, by a name the resolver takes
    offered = [e.value for e in run_models(full_run.path.parent) if e.value.startswith(str(full_run.path))]
    assert offered == [str(step4), str(step2)]
    assert {locate_model(v)[0] for v in offered} == {"full_checkpoint"}
    with pytest.raises(Exception, match=r"no checkpoint at step 3 \(have: 2, 4\)"):
        resolve_base_model(f"{full_run.path}@3")


def test_generate_and_merge_take_a_checkpoint_like_any_model(full_run, tiny_model_dir, tmp_path, one_torch_thread):
    import torch
    from safetensors.torch import load_file

    from sdstudio.core.generation.compare import plan_variants
    from sdstudio.core.generation.generator import GenerateOptions, Generator
    from sdstudio.core.merge.merger import merge_files

    opts = GenerateOptions(prompt=PROMPT, seeds=[3], steps=2, width=16, height=16)
    fine = Generator(f"{full_run.path}@4", device="cpu").generate(opts)[0].image
    base = Generator(str(tiny_model_dir), device="cpu").generate(opts)[0].image
    assert np.abs(np.asarray(fine, dtype=float) - np.asarray(base, dtype=float)).max() > 0  # the fine-tune draws
    with pytest.raises(Exception, match=r"checkpoints are models, not LoRAs; pass --model .*@STEP"):
        plan_variants(["demo"], [str(full_run.path)])  # `generate --lora RUN` of a full run

    out = merge_files(str(full_run.checkpoint_path(4)), tmp_path / "half.safetensors", str(tiny_model_dir),
                      multiplier=0.5, dtype="fp32")
    key = "model.diffusion_model.input_blocks.0.0.weight"  # diffusers' unet conv_in
    ema = component_state(full_run.checkpoint(4).path / "ema" / "unet", "unet")["conv_in.weight"]
    own = component_state(tiny_model_dir / "unet", "unet")["conv_in.weight"]
    assert torch.allclose(load_file(str(out))[key], 0.5 * ema + 0.5 * own, atol=1e-6)


def test_score_samples_a_pending_full_checkpoint_with_its_weights(full_run, tmp_path, one_torch_thread):
    import shutil

    from sdstudio.core.config import build_config
    from sdstudio.core.models import load_pipeline
    from sdstudio.core.runs.run_dir import RunDir
    from sdstudio.core.training import validation
    from sdstudio.core.training.more_seeds import load_generator, sample_step
    from sdstudio.core.training.pending import complete_pending

    run = RunDir(shutil.copytree(full_run.path, tmp_path / "ft"))
    run.set_pending("samples", 2)
    assert complete_pending(run, log=lambda _: None) == [2]
    got = {s.step: np.asarray(__import__("PIL.Image").Image.open(s.path)) for s in run.samples()}
    reference = RunDir(tmp_path / "reference")
    cfg = build_config(run.config())
    validation.sample(load_pipeline(str(run.checkpoint_path(2))), reference, 2, cfg, [PROMPT],
                      __import__("torch").device("cpu"))
    want = np.asarray(__import__("PIL.Image").Image.open(reference.samples()[0].path))
    np.testing.assert_array_equal(got[2], want)  # the step's EMA weights drew it

    generator = load_generator(run.config(), "cpu")  # `score --more-seeds`: one base pipeline, weights swapped
    before = {k: v.clone() for k, v in generator.pipe.unet.state_dict().items()}
    sample_step(generator, run, 4, [11], run.config())
    assert [s.seed for s in run.samples() if s.step == 4] == [11]
    assert _same(generator.pipe.unet, before)  # the base's weights are back afterwards

    from sdstudio.cli import main  # scored like a LoRA run, and `export --best` takes the pick

    assert main(["score", str(run.path), "--scorer", "demo"]) == 0
    assert main(["export", str(run.path), "--best"]) == 0
    assert len(list(run.exports_dir.glob("ft-step*-ema.safetensors"))) == 1


async def test_checkpoints_e_key_exports_a_full_checkpoint(full_run, tmp_path, monkeypatch) -> None:
    import shutil

    from safetensors import safe_open

    from sdstudio.core.models import detect_family
    from sdstudio.tui.app import StudioApp
    from sdstudio.tui.screens.checkpoints import CheckpointsScreen
    from test_tui_fixtures import wait_for

    from PIL import Image

    from sdstudio.core.runs.run_dir import RunDir

    run_path = shutil.copytree(full_run.path, tmp_path / "ft")
    for step in (2, 4):  # the screen's rows are the sampled steps
        RunDir(run_path).add_sample(step, 0, PROMPT, 1, Image.new("RGB", (16, 16), "red"))
    app = StudioApp(run_dir=run_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CheckpointsScreen)
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.last_export is not None, timeout=60)
    exported = screen.last_export
    assert exported == run_path / "exports" / "ft-step4-ema.safetensors"
    with safe_open(str(exported), "pt") as fh:
        assert detect_family(list(fh.keys())) == "sd1"
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"F16"}
