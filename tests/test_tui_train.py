"""Train from the studio with the real trainer on the tiny model, then export from Checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Sparkline, Static

from sdstudio.tui.app import StudioApp
from sdstudio.tui.images import LazyImage
from sdstudio.tui.screens.checkpoints import CheckpointsScreen
from sdstudio.tui.settings import load_settings
from sdstudio.tui.widgets.sample_preview import SamplePreview
from sdstudio.tui.widgets.loss_chart import LossChart
from sdstudio.tui.widgets.train_live import TrainingView
from test_tui_fixtures import make_dataset, wait_for, write_settings


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # the test machine is shared


async def test_train_watch_then_export_a_checkpoint(tiny_model_dir: Path, runs_root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import safe_open

    settings = write_settings(tmp_path / "config.toml", tiny_model_dir, make_dataset(tmp_path / "data"))
    monkeypatch.setenv("SDSTUDIO_CONFIG", str(settings))
    app = StudioApp(settings=load_settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        assert app.session.busy or app.session.state == "finished"  # started (a tiny run may be done already)
        await wait_for(pilot, lambda: not app.session.busy, timeout=240)
        await pilot.pause(0.5)  # one sync of the Train screen
        assert app.session.state == "finished", app.session.error
        live = app.screen.query_one(TrainingView)
        assert len(live.query_one("#loss", Sparkline).data) == 4  # every step reached the curve
        chart = live.query_one(LossChart)  # and the chart: raw and smoothed, with the numbers
        assert [s for s, _ in chart._data[0]] == [1, 2, 3, 4]
        assert chart.numbers.startswith("loss ") and "(step 4)" in chart.numbers and " min " in chart.numbers
        assert len(live.shown_samples) == 2  # newest samples: one per prompt, as thumbnails
        assert live.query_one("#thumb-0 LazyImage", LazyImage).image is not None

        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, CheckpointsScreen)
        assert screen.run is not None and screen.run.path == app.session.run_dir
        preview = screen.query_one(SamplePreview)
        assert preview.current.step == 4
        await pilot.press("k")
        assert preview.current.step == 2 and preview.current.checkpoint
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.last_export is not None, timeout=60)
        exported = screen.last_export
        assert exported.exists() and exported.parent == screen.run.path / "exports"
        assert any(exported.name in n.message for n in app._notifications)
        with safe_open(str(exported), "pt") as fh:
            keys = list(fh.keys())
        assert keys and all(k.startswith(("lora_unet_", "lora_te_")) for k in keys)


async def test_a_failing_run_leaves_the_studio_up_with_the_message(tiny_model_dir: Path, runs_root: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(tmp_path / "broken", broken=True)
    monkeypatch.setenv("SDSTUDIO_CONFIG", str(write_settings(tmp_path / "config.toml", tiny_model_dir, data)))
    app = StudioApp(settings=load_settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not app.session.busy, timeout=120)
        await pilot.pause(0.5)
        assert app.session.state == "failed"
        shown = str(app.screen.query_one("#state", Static).render())
        assert shown.startswith("Failed: ") and "broken" in shown
        assert any(n.title == "Training failed" for n in app._notifications)
        assert app.is_running and app.screen.check_action("start", ()) is True  # ready for another try


async def test_form_shows_the_fields_of_the_chosen_method(runs_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.widgets import Input, Select

    monkeypatch.setenv("SDSTUDIO_CONFIG", str(tmp_path / "none.toml"))
    app = StudioApp(settings=load_settings())
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.pause()
        form = app.screen.query_one("#form")
        shown = lambda name: form.query_one(f"#row-{name}").display  # noqa: E731
        form.query_one("#field-method", Select).value = "text2image"
        await pilot.pause()
        assert shown("train_data_dir") and not shown("instance_data_dir") and not shown("instance_prompt")
        assert "sks" not in form.query_one("#field-validation_prompts", Input).placeholder
        form.query_one("#field-method", Select).value = "dreambooth"
        await pilot.pause()
        assert not shown("train_data_dir") and shown("instance_data_dir") and shown("instance_prompt")
        assert form.query_one("#field-instance_data_dir", Input).placeholder == "data/dreambooth/pink-heart"
