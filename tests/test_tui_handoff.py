"""In the studio, the Dataset screen's "Train on it" fills the Train form with that folder."""

from __future__ import annotations

from pathlib import Path

from sdstudio.tui.app import StudioApp
from sdstudio.tui.screens.dataset import DatasetScreen
from test_tui_fixtures import make_dataset


async def test_dataset_hands_its_folder_to_the_train_form(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SDSTUDIO_RUNS", str(tmp_path / "runs"))
    folder = make_dataset(tmp_path / "mine", count=3)
    app = StudioApp(start_screen="train")
    async with app.run_test(size=(100, 30)) as pilot:
        app.post_message(DatasetScreen.UseDataset({"method": "text2image", "train_data_dir": str(folder),
                                                   "instance_data_dir": None, "resolution": 64}))
        for _ in range(40):
            await pilot.pause(0.05)
            screen = app.screen
            if getattr(screen, "validate", None) and (cfg := screen.validate()) and cfg.train_data_dir == str(folder):
                break
        cfg = app.screen.validate()
        assert app.current_mode == "train"
        assert cfg is not None and cfg.train_data_dir == str(folder) and cfg.resolution == 64
