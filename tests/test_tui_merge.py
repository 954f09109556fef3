"""Merge screen: the slider drives a live preview; Save streams the merge to disk and it loads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from textual.app import App
from textual.widgets import Input

from sdstudio.tui.screens.merge import MergeScreen
from sdstudio.tui.widgets.slider import FloatSlider
from tui_host import ScreenHost


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model with other random weights: something to merge with."""
    from sdstudio.demo.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-b") / "tiny-b", seed=1)


async def _settle(app: App, pilot, debounce: bool = False) -> None:
    if debounce:
        await pilot.pause(0.4)  # the slider's debounce timer
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


async def test_slider_updates_preview_and_save_loads_back(tiny_model_dir: Path, model_b: Path, tmp_path: Path) -> None:
    import torch

    from sdstudio.core.models import load_pipeline, resolve_base_model

    app = ScreenHost(MergeScreen(tiny_model_dir, model_b, multiplier=0.0, prompt="a red circle", seed=7, steps=2))
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        await _settle(app, pilot)
        assert screen.preview_multiplier == 0.0
        at_zero = screen.query_one("#mg-preview").image

        screen.query_one("#mg-slider", FloatSlider).focus()
        await pilot.press("shift+right", "shift+right", "shift+right")  # 0.3, in coarse steps
        assert screen.query_one("#mg-preview").image is at_zero  # the old preview stays while the new renders
        for _ in range(100):  # the debounce timer, then the render (slow on a busy machine)
            await _settle(app, pilot, debounce=True)
            if screen.preview_multiplier == pytest.approx(0.3):
                break
        assert screen.preview_multiplier == pytest.approx(0.3)
        at_03 = screen.query_one("#mg-preview").image
        assert np.abs(_pixels(at_03) - _pixels(at_zero)).max() > 0

        out = tmp_path / "merged"
        screen.query_one("#mg-out", Input).value = str(out)
        screen.query_one("#mg-dtype").value = "fp32"
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert "saved" in str(screen.query_one("#mg-save-status").render())

    pipe = load_pipeline(resolve_base_model(out))
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        again = pipe("a red circle", num_inference_steps=2, guidance_scale=7.5,
                     generator=torch.Generator().manual_seed(7)).images[0]
    # the file is what the preview showed (up to float rounding), not what M = 0 showed
    assert np.abs(_pixels(again) - _pixels(at_03)).max() <= 4
    assert np.abs(_pixels(again) - _pixels(at_03)).mean() < 0.1 * np.abs(_pixels(again) - _pixels(at_zero)).mean()


async def test_lora_fuse_scale_slider(tiny_model_dir: Path, trained_run, tmp_path: Path) -> None:
    """The fused file is W = W0 + scale * up @ down * alpha / rank for every LoRA module, as diffusers'
    own single-file loader reads it, with the LoRA a real training run wrote; other weights are W0."""
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from conftest import TRAINED_ALPHA, TRAINED_RANK

    checkpoint = trained_run.checkpoint(4)
    lora = checkpoint.weights
    app = ScreenHost(MergeScreen(tiny_model_dir, lora, method="lora-fuse", prompt="a red circle", steps=2))
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        await _settle(app, pilot)
        assert not screen.query_one("#mg-c-row").display
        assert screen.preview_multiplier == 1.0  # a LoRA starts at full strength
        full = screen.query_one("#mg-preview").image
        screen.query_one("#mg-slider", FloatSlider).focus()
        await pilot.press(*["shift+left"] * 10)  # scale 0: the base model alone
        await _settle(app, pilot, debounce=True)
        assert screen.preview_multiplier == 0.0
        assert np.abs(_pixels(screen.query_one("#mg-preview").image) - _pixels(full)).max() > 0

        screen.query_one("#mg-out", Input).value = str(tmp_path / "fused.safetensors")
        screen.query_one("#mg-dtype").value = "fp32"
        screen.query_one("#mg-slider", FloatSlider).value = 0.5
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert "saved" in str(screen.query_one("#mg-save-status").render())

    base = StableDiffusionPipeline.from_pretrained(tiny_model_dir, torch_dtype=torch.float32)
    fused = StableDiffusionPipeline.from_single_file(str(tmp_path / "fused.safetensors"), config=str(tiny_model_dir),
                                                     local_files_only=True, torch_dtype=torch.float32)
    tensors = load_file(str(checkpoint.path / "state" / "lora_peft.safetensors"))  # the trained adapter, peft names
    modules = sorted(k.removesuffix(".lora_A.weight") for k in tensors if k.endswith(".lora_A.weight"))
    assert {m.split(".")[0] for m in modules} == {"unet", "text_encoder"}
    changed = set()
    for module in modules:
        component, path = module.split(".", 1)
        down, up = tensors[f"{module}.lora_A.weight"], tensors[f"{module}.lora_B.weight"]
        w0 = getattr(base, component).get_submodule(path).weight
        want = w0 + 0.5 * (up @ down) * TRAINED_ALPHA / TRAINED_RANK
        got = getattr(fused, component).get_submodule(path).weight
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=module)
        assert (want - w0).abs().max() > 1e-4, module  # the LoRA is not negligible: ignoring it would fail
        changed.add(f"{component}.{path}.weight")
    for component in ("unet", "text_encoder", "vae"):  # the rest of the model is the base, untouched
        ours = getattr(fused, component).state_dict()
        for key, w0 in getattr(base, component).state_dict().items():
            if f"{component}.{key}" not in changed and w0.is_floating_point():
                assert torch.equal(ours[key], w0), f"{component}.{key}"


async def test_missing_inputs_are_named(tiny_model_dir: Path) -> None:
    app = ScreenHost(MergeScreen(tiny_model_dir, method="add-difference"))
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        assert screen.query_one("#mg-c-row").display
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert any("B:" in n.message for n in app._notifications)
        screen.query_one("#mg-b").value = "other"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert any("C:" in n.message for n in app._notifications)
        assert not screen.saving


def test_snapshot_merge_screen(snap_compare, tmp_path: Path) -> None:
    async def move(pilot) -> None:
        pilot.app.screen.query_one("#mg-slider").focus()
        await pilot.press("right", "right", "shift+right")
        await pilot.pause()

    app = ScreenHost(MergeScreen("demo", method="weighted-sum", multiplier=0.3, steps=20))
    assert snap_compare(app, terminal_size=(100, 30), run_before=move)
