"""Dataset screen: the checker's verdicts in the grid, caption edits that reach the disk, hand-off to Train."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Button, Input, TextArea

from sdstudio.core.paths import PROJECT_ROOT
from sdstudio.tui.screens.dataset import DatasetScreen
from sdstudio.tui.widgets.thumbgrid import ThumbGrid
from tui_host import ScreenHost

SHAPES = PROJECT_ROOT / "data" / "shapes"


class Host(ScreenHost):
    """The screen alone, recording what it hands to the Train screen."""

    def __init__(self, screen: DatasetScreen) -> None:
        super().__init__(screen)
        self.handed: list[dict] = []

    def on_dataset_screen_use_dataset(self, message: DatasetScreen.UseDataset) -> None:
        self.handed.append(message.fields)


def _copy_shapes(dest: Path, count: int) -> list[str]:
    dest.mkdir(parents=True)
    names = sorted(p.name for p in SHAPES.glob("*.png"))[:count]
    for name in names:
        shutil.copy(SHAPES / name, dest / name)
    return names


async def _settle(app: App, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_caption_edit_is_saved_to_metadata_jsonl(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    names = _copy_shapes(folder, 3)
    rows = [{"file_name": names[0], "text": "a red circle"}, {"file_name": names[1], "text": "a blue square"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    app = Host(DatasetScreen(folder=folder, resolution=64))
    async with app.run_test(size=(100, 32)) as pilot:
        await _settle(app, pilot)
        screen = app.screen
        verdicts = {f.name: (f.status, f.reason) for f in screen.shown}
        assert verdicts[names[2]][0] == "bad" and verdicts[names[2]][1].startswith("no caption")
        assert verdicts["broken.png"][0] == "bad" and "unreadable" in verdicts["broken.png"][1]
        assert "captions missing" in str(screen.query_one("#ds-summary").render())

        grid = screen.query_one(ThumbGrid)
        grid.focus()
        await pilot.press("right", "right")  # the third image: the one without a caption
        await _settle(app, pilot)
        assert screen.selected.name == names[2]
        await pilot.press("enter")  # enter on a tile jumps to its caption
        assert app.focused is screen.query_one("#ds-caption", TextArea)
        await pilot.press(*"a green star")
        await pilot.press("ctrl+s")
        await pilot.pause()
        saved = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
        assert {"file_name": names[2], "text": "a green star"} in saved
        assert saved[:2] == rows  # the other captions are untouched
        assert screen.selected.status == "ok"


async def test_caption_edit_goes_to_txt_sidecar_and_folder_goes_to_train(tmp_path: Path) -> None:
    folder = tmp_path / "txtds"
    names = _copy_shapes(folder, 2)
    for name in names:
        (folder / name).with_suffix(".txt").write_text("old caption\n")
    app = Host(DatasetScreen(folder=folder, resolution=64))
    async with app.run_test(size=(100, 32)) as pilot:
        await _settle(app, pilot)
        screen = app.screen
        assert screen.report.caption_store == "txt"
        screen.query_one("#ds-caption", TextArea).load_text("a new caption")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert (folder / names[0]).with_suffix(".txt").read_text().strip() == "a new caption"
        assert (folder / names[1]).with_suffix(".txt").read_text().strip() == "old caption"
        assert not (folder / "metadata.jsonl").exists()

        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.handed == [{"resolution": 64, "center_crop": True, "enable_bucket": False, "method": "text2image",
                               "train_data_dir": str(folder), "instance_data_dir": None}]


async def test_crop_preview_shows_what_the_model_sees(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "wide"
    folder.mkdir()
    Image.new("RGB", (128, 64), (200, 30, 30)).save(folder / "wide.png")
    app = Host(DatasetScreen(folder=folder, resolution=32))
    async with app.run_test(size=(100, 32)) as pilot:
        await _settle(app, pilot)
        screen = app.screen
        assert screen.report.caption_store is None  # no captions: a DreamBooth folder
        original = screen.query_one("#ds-original").image
        seen = screen.query_one("#ds-model").image
        assert original.size[0] == 2 * original.size[1]  # the whole wide image, crop marked on it
        assert seen.size[0] == seen.size[1]  # the model gets a square

        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.handed[-1]["method"] == "dreambooth"
        assert app.handed[-1]["instance_data_dir"] == str(folder)


async def test_bucket_mode_shows_each_images_bucket_and_the_summary_counts_them(tmp_path: Path) -> None:
    from PIL import Image
    from textual.widgets import Label, Select, Static

    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (192, 64), (200, 30, 30)).save(folder / "wide.png")
    Image.new("RGB", (100, 100), (30, 30, 200)).save(folder / "square.png")
    app = Host(DatasetScreen(folder=folder, resolution=128))
    async with app.run_test(size=(120, 32)) as pilot:
        await _settle(app, pilot)
        screen = app.screen
        summary = str(screen.query_one("#ds-summary", Static).render())
        assert "buckets at 128 px: 128x128 1, 256x64 1" in summary
        screen.query_one("#ds-crop", Select).value = "bucket"
        await _settle(app, pilot)
        screen._show_file(next(f for f in screen.shown if f.name == "wide.png"))
        await _settle(app, pilot)
        assert "bucket 256x64" in str(screen.query_one("#ds-info", Static).render())
        assert "model sees 256x64 (bucket" in str(screen.query_one("#ds-model-label", Label).render())
        seen = screen.query_one("#ds-model").image
        assert seen.size[0] == 4 * seen.size[1]  # the 256x64 bucket, not a square
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.handed[-1]["enable_bucket"] is True


def test_snapshot_dreambooth_folder(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT_ROOT)

    async def settle(pilot) -> None:
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    app = Host(DatasetScreen(folder="data/dreambooth/pink-heart", resolution=64))
    assert snap_compare(app, terminal_size=(100, 32), run_before=settle)


async def test_class_folder_panel_generates_the_missing_class_images(tmp_path: Path, tiny_model_dir: Path,
                                                                      one_torch_thread) -> None:
    folder = tmp_path / "heart"
    _copy_shapes(folder, 2)  # no captions: a DreamBooth instance folder
    app = Host(DatasetScreen(folder=folder, model=tiny_model_dir, resolution=32))
    async with app.run_test(size=(100, 32)) as pilot:
        await _settle(app, pilot)
        screen = app.screen
        screen.query_one("#ds-class-prompt", Input).value = "a photo of a shape"
        screen.query_one("#ds-class-count", Input).value = "3"
        start = screen.query_one("#ds-class-start", Button)
        start.focus()
        await pilot.press("enter")  # the panel's "Generate class images" button
        await _settle(app, pilot)
        made = sorted((tmp_path / "heart-class").glob("*.png"))
        assert len(made) == 3
        fields = screen.train_fields()
        assert fields["with_prior_preservation"] and fields["class_data_dir"] == str(tmp_path / "heart-class")
