"""The Merge screen as a newcomer meets it, in the real studio: A is the demo, B is picked from the
list; Save writes a file that loads; a LoRA as B switches to LoRA fuse, and if forced back to a
weighted sum, preview and save refuse it with the same message."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Select

from sdstudio.core.errors import ModelError
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.tui.app import StudioApp

pytestmark = pytest.mark.usefixtures("one_torch_thread")


async def _open_merge(app: StudioApp, pilot) -> object:  # type: ignore[no-untyped-def]
    await pilot.pause()
    await pilot.press("f5")
    await pilot.pause()
    screen = app.screen
    assert type(screen).__name__ == "MergeScreen"
    assert screen.query_one("#mg-a", Input).value == "demo"
    return screen


def _pick(screen: object, kind_text: str) -> str:
    """Choose the first entry of B's list whose label says `kind_text`, as a user does."""
    picker = screen.query_one("#mg-b")  # type: ignore[attr-defined]
    value = next(v for label, v in picker.options if kind_text in label)
    picker.query_one(Select).value = value  # what choosing in the dropdown does
    return value


async def _settle(app: StudioApp, pilot) -> None:  # type: ignore[no-untyped-def]
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_merge_with_the_default_a_saves_a_file_that_loads(runs_root: Path) -> None:
    import torch

    from sdstudio.core.models import load_pipeline, locate_model, resolve_base_model

    app = StudioApp()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await _open_merge(app, pilot)
        assert _pick(screen, "built-in demo") == "demo"
        screen.query_one("#mg-steps", Input).value = "2"
        await pilot.pause()
        await _settle(app, pilot)
        assert screen.preview_multiplier == pytest.approx(0.3)
        await pilot.press("ctrl+s")  # no file named: a new one under the runs folder
        await _settle(app, pilot)
        status = str(screen.query_one("#mg-save-status").render())
        assert "saved" in status, status
    (out,) = (runs_root / "merges").glob("*.safetensors")
    pipe = load_pipeline(resolve_base_model(out), config=locate_model("demo")[1])
    with torch.no_grad():
        image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size[0] > 0


@pytest.fixture()
def demo_lora_run(runs_root: Path, tmp_path: Path) -> Path:
    """What a demo training leaves: the real trainer, two steps of a UNet LoRA on the demo model,
    one checkpoint in the runs folder (so the picker lists it)."""
    from conftest import draw_shape_images
    from sdstudio.core.config import build_config
    from sdstudio.core.training.trainer import train

    draw_shape_images(tmp_path / "instance", 2, (230, 30, 30), size=64)
    cfg = build_config({"pretrained_model_name_or_path": "demo", "instance_data_dir": str(tmp_path / "instance"),
                        "instance_prompt": "a sks shape", "resolution": 64, "rank": 4, "lora_alpha": 4.0,
                        "max_train_steps": 2, "checkpointing_steps": 2, "num_validation_images": 0,
                        "learning_rate": 1e-2, "output_dir": str(runs_root / "demo-lora")})
    return train(cfg).checkpoint(2).weights


async def test_a_lora_as_b_fuses_and_preview_and_save_agree(demo_lora_run: Path, runs_root: Path,
                                                           tmp_path: Path) -> None:
    from sdstudio.core.merge.merger import merge_files
    from sdstudio.core.merge.sources import lora_as_model_error

    app = StudioApp()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await _open_merge(app, pilot)
        screen.query_one("#mg-steps", Input).value = "2"
        assert Path(_pick(screen, "LoRA checkpoint")) == demo_lora_run
        await _settle(app, pilot)
        assert screen.method == "lora-fuse"  # switched, and the user is told
        assert "method switched to LoRA fuse" in str(screen.query_one("#mg-preview-status").render())
        assert screen.preview_multiplier == pytest.approx(1.0)
        screen.query_one("#mg-out", Input).value = str(tmp_path / "fused.safetensors")
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert (tmp_path / "fused.safetensors").is_file()

        screen.query_one("#mg-method", Select).value = "weighted-sum"  # forced back by hand
        await _settle(app, pilot)
        preview_said = str(screen.query_one("#mg-preview-status").render())
        screen.query_one("#mg-out", Input).value = str(tmp_path / "ws.safetensors")
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        save_said = str(screen.query_one("#mg-save-status").render())
    expected = str(lora_as_model_error(demo_lora_run))
    assert preview_said == save_said == expected
    assert not (tmp_path / "ws.safetensors").exists()
    with pytest.raises(ModelError, match="LoRA fuse"):  # the command line says the same
        merge_files("demo", tmp_path / "cli.safetensors", demo_lora_run)


async def test_b_can_be_a_typed_path(runs_root: Path) -> None:
    """The list's last choice opens a path field; enter adds the path to the list and selects it."""
    from sdstudio.core.models import locate_model
    from sdstudio.tui.widgets.model_picker import TYPED

    folder = locate_model("demo")[1]
    app = StudioApp()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await _open_merge(app, pilot)
        screen.query_one("#mg-steps", Input).value = "1"
        picker = screen.query_one("#mg-b")
        picker.query_one(Select).value = TYPED
        await pilot.pause()
        field = picker.query_one(Input)
        assert screen.focused is field and field.display
        field.value = folder
        await pilot.press("enter")
        await _settle(app, pilot)
        assert picker.value == folder and (f"{folder}  (path)", folder) in picker.options
        assert screen.method == "weighted-sum" and screen.preview_multiplier == pytest.approx(0.3)
