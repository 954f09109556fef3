"""Generate screen: generate in a worker, see the results, save PNGs; LoRAs from runs; the XY grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from textual.app import App
from textual.widgets import Input, Select

from sdstudio.tui.screens.generate import GenerateScreen
from sdstudio.tui.widgets.lora_list import LoraList, find_loras
from sdstudio.tui.widgets.thumbgrid import ThumbGrid
from tui_host import ScreenHost


pytestmark = pytest.mark.usefixtures("one_torch_thread")


async def _settle(app: App, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def _fill(screen: GenerateScreen, **fields: str) -> None:
    for name, value in fields.items():
        screen.query_one(f"#gen-{name}", Input).value = value


@pytest.fixture(scope="module")
def lora_run(trained_run) -> Path:
    """A runs folder holding the session's real training run `shapes` (checkpoints at steps 2 and 4)."""
    return trained_run.path.parent


async def test_generate_shows_results_and_saves_pngs(tiny_model_dir: Path, runs_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    app = ScreenHost(GenerateScreen(model=tiny_model_dir, out_dir=out))
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        _fill(screen, prompt="a red circle", seeds="3-4", steps="2", width="32", height="32")
        await pilot.press("ctrl+r")
        await _settle(app, pilot)
        assert [r["item"].seed for r in screen.results] == [3, 4]
        assert len(screen.query_one(ThumbGrid).specs) == 2
        assert screen.query_one("#gen-preview").image is screen.results[0]["image"]
        assert not out.exists()  # nothing is written until Save

        await pilot.press("ctrl+s")
        await pilot.pause()
        pngs = sorted(out.glob("*.png"))
        assert len(pngs) == 2
        with Image.open(pngs[0]) as im:
            assert im.size == (32, 32)
            assert "a red circle" in im.info.get("parameters", "")

        # a second generation reuses the loaded pipeline
        loaded = screen.generator
        _fill(screen, seeds="5")
        await pilot.press("ctrl+r")
        await _settle(app, pilot)
        assert screen.generator is loaded
        assert [r["item"].seed for r in screen.results] == [5]


async def test_bad_field_is_named_and_nothing_runs(tiny_model_dir: Path, runs_root: Path) -> None:
    app = ScreenHost(GenerateScreen(model=tiny_model_dir))
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        _fill(screen, prompt="x", steps="many")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not screen.busy and screen.generator is None
        assert any("steps" in n.message for n in app._notifications)


async def test_lora_from_a_run_and_checkpoint_grid(tiny_model_dir: Path, lora_run: Path,
                                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SDSTUDIO_RUNS", str(lora_run))
    choices = find_loras(lora_run)
    assert [c.label for c in choices] == ["step 4 checkpoint · shapes", "step 2 checkpoint · shapes"]
    app = ScreenHost(GenerateScreen(model=tiny_model_dir, out_dir=tmp_path / "out"))
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        _fill(screen, prompt="a red circle", seeds="1", steps="2", width="32", height="32")
        await pilot.press("ctrl+r")
        await _settle(app, pilot)
        base = screen.results[0]["image"]

        screen.query_one("#gen-lora-pick", Select).value = str(choices[0].path)
        await pilot.click("#gen-lora-add")
        await pilot.pause()
        assert screen.query_one(LoraList).selected() == [(choices[0].path, 1.0)]
        await pilot.press("ctrl+r")
        await _settle(app, pilot)
        with_lora = screen.results[0]["image"]
        assert base.tobytes() != with_lora.tobytes()  # the LoRA changes the picture

        screen.query_one("#gen-grid-run", Select).value = str(lora_run / "shapes")
        _fill(screen, seeds="1-2")
        await pilot.press("ctrl+g")
        await _settle(app, pilot)
        grid = screen.results[0]["image"]
        assert grid.width > 2 * 32 and grid.height > 2 * 32  # 2 seeds x 2 checkpoints, with labels
        saved = screen.results[0]["saved"]  # the grid is written with its images as it is made
        assert saved.name == "grid.png" and saved.parent.parent == tmp_path / "out"
        assert len(list(saved.parent.glob("*.png"))) == 1 + 2 * 2


def test_snapshot_generate_form(snap_compare, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:
    monkeypatch.setenv("SDSTUDIO_RUNS", str(tmp_path))  # no runs: an empty LoRA list

    async def fill(pilot) -> None:
        _fill(pilot.app.screen, prompt="a blue square on a grey background", seeds="1-4", model="demo",
              steps="20", guidance="4.0", width="64", height="64")  # fixed: not read from models/demo
        await pilot.pause()

    app = ScreenHost(GenerateScreen(model="demo", out_dir="outputs"))
    assert snap_compare(app, terminal_size=(100, 30), run_before=fill)
