"""In the studio, the Dataset screen's "Train on it" key fills the Train form with that folder."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from sdstudio.tui.app import StudioApp
from sdstudio.tui.screens.dataset import DatasetScreen
from test_tui_fixtures import make_dataset


async def test_dataset_hands_its_folder_to_the_train_form(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SDSTUDIO_RUNS", str(tmp_path / "runs"))
    folder = make_dataset(tmp_path / "mine", count=3)
    app = StudioApp(start_screen="dataset")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DatasetScreen)
        res = screen.query_one("#ds-res", Input)
        res.value = "64"
        path = screen.query_one("#ds-path", Input)
        path.value = str(folder)
        path.focus()
        await pilot.press("enter")  # open the folder: the dataset check runs
        for _ in range(100):
            await pilot.pause(0.05)
            await app.workers.wait_for_complete()
            if screen.report is not None and screen.folder == folder:
                break
        assert screen.folder == folder and screen.report is not None
        screen.set_focus(None)
        await pilot.press("ctrl+o")  # "Train on it"
        for _ in range(40):
            await pilot.pause(0.05)
            if app.current_mode == "train" and (cfg := app.screen.validate()) and cfg.train_data_dir == str(folder):
                break
        assert app.current_mode == "train", "ctrl+o on the Dataset screen did not open the Train screen"
        cfg = app.screen.validate()
        assert cfg is not None and cfg.method == "text2image" and cfg.train_data_dir == str(folder)
        assert cfg.resolution == 64
