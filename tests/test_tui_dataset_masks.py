"""Dataset screen, masks and crops: the overlay shows a mask's coverage, the keyboard crop editor
keeps the bucket's aspect and writes only on accept, Mask all writes only when accepted."""

from __future__ import annotations

import shutil
from pathlib import Path

from textual.widgets import Input, Label, Static

from sdstudio.core.masks.crops import read_crops
from sdstudio.core.paths import PROJECT_ROOT
from sdstudio.tui.screens.dataset import DatasetScreen
from sdstudio.tui.screens.mask_batch import MaskBatchScreen
from sdstudio.tui.widgets.crop_editor import CropEditor
from test_tui_dataset import _settle
from tui_host import ScreenHost

PINK_HEART = PROJECT_ROOT / "data" / "dreambooth" / "pink-heart"


def _heart_copy(dest: Path, count: int = 3) -> list[str]:
    dest.mkdir(parents=True)
    names = sorted(p.name for p in PINK_HEART.glob("*.png"))[:count]
    for name in names:
        shutil.copy(PINK_HEART / name, dest / name)
    return names


async def test_mask_overlay_toggle_shows_the_coverage(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "heart"
    names = _heart_copy(folder, 2)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # the left half is the subject: 50 %
    mask.save(folder / (Path(names[0]).stem + "-mask.png"))
    app = ScreenHost(DatasetScreen(folder=folder, resolution=64))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        screen = app.screen
        assert len(screen.shown) == 2  # the mask file is not listed as an image
        assert "mask 50.0%" in str(screen.query_one("#ds-info", Static).render())
        assert "50% " in screen.tile_label(screen.shown[0]) and "% " not in screen.tile_label(screen.shown[1])
        plain = screen.query_one("#ds-original").image.copy()
        await pilot.press("m")
        await _settle(app, pilot)
        assert "mask 50%" in str(screen.query_one("#ds-original-label", Label).render())
        tinted = screen.query_one("#ds-original").image
        # the background (right half) is dimmed, the subject (left half) is not
        right, left = (tinted.width * 3 // 4, tinted.height // 8), (tinted.width // 4, tinted.height // 8)
        assert sum(tinted.getpixel(right)) < sum(plain.getpixel(right)) - 100
        assert tinted.getpixel(left) == plain.getpixel(left)
        await pilot.press("m")
        await _settle(app, pilot)
        assert screen.query_one("#ds-original").image.getpixel(right) == plain.getpixel(right)


async def test_crop_editor_keeps_the_aspect_and_writes_only_on_accept(tmp_path: Path) -> None:
    from PIL import Image
    from textual.widgets import Select

    folder = tmp_path / "wide"
    folder.mkdir()
    Image.new("RGB", (192, 64), (200, 30, 30)).save(folder / "wide.png")
    app = ScreenHost(DatasetScreen(folder=folder, resolution=128))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        screen = app.screen
        screen.query_one("#ds-crop", Select).value = "bucket"  # 192x64 trains in the 256x64 bucket: 4:1
        await _settle(app, pilot)
        screen.query_one("#ds-grid").focus()
        await pilot.press("c")
        editor = screen.query_one(CropEditor)
        assert app.focused is editor and editor.aspect == 4.0
        await pilot.press("H", "H", "H")  # smaller, three steps
        await pilot.press("l", "l", "j")
        box = editor.box
        assert box is not None and box[2] == 4 * box[3] and box[2] < 192
        assert box[0] > (192 - box[2]) // 2  # moved right of centre
        await _settle(app, pilot)
        assert "(box" in str(screen.query_one("#ds-model-label", Label).render())
        assert not (folder / "crops.jsonl").exists()  # nothing written while editing
        await pilot.press("escape")  # leave without writing
        await _settle(app, pilot)
        assert not (folder / "crops.jsonl").exists() and not editor.editing
        assert app.focused is screen.query_one("#ds-grid")

        await pilot.press("c", "K", "K", "h")
        edited = editor.box
        await pilot.press("enter")
        await _settle(app, pilot)
        assert read_crops(folder)[0] == {"wide.png": edited}
        assert "⊡" in screen.tile_label(screen.shown[0])
        await pilot.press("c", "r", "ctrl+s")  # reset, accepted: the stored box is cleared
        await _settle(app, pilot)
        assert read_crops(folder)[0] == {}


async def test_mask_all_writes_masks_only_when_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "pink-heart"
    names = _heart_copy(folder, 3)
    app = ScreenHost(DatasetScreen(folder=folder, resolution=64))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        await pilot.press("M")
        await pilot.pause()
        batch = app.screen
        assert isinstance(batch, MaskBatchScreen)
        prompt = batch.query_one("#mb-prompt", Input)
        assert prompt.value == "pink heart" and app.focused is prompt  # the folder's name, ready to run
        await pilot.press("escape")  # Escape leaves the field first; the screen stays
        assert app.screen is batch and app.focused is None
        prompt.focus()
        await pilot.press("enter")
        await _settle(app, pilot)
        assert batch.proposal is not None and len(batch.proposal.masks) == 3
        assert "3 masks · mean coverage" in str(batch.query_one("#mb-status", Static).render())
        assert not list(folder.glob("*-mask.png"))  # nothing yet
        await pilot.press("escape")  # cancel: the folder stays as it was
        await _settle(app, pilot)
        assert isinstance(app.screen, DatasetScreen) and not list(folder.glob("*-mask.png"))

        await pilot.press("M", "enter")
        await _settle(app, pilot)
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert sorted(p.name for p in folder.glob("*-mask.png")) == [Path(n).stem + "-mask.png" for n in names]
        screen = app.screen
        assert isinstance(screen, DatasetScreen) and len(screen.shown) == 3
        assert all(c is not None and 0.05 < c < 0.5 for c in screen.coverages.values())

        await pilot.press("C")  # crop all to subject, from the masks just written
        await _settle(app, pilot)
        assert isinstance(app.screen, MaskBatchScreen) and not (folder / "crops.jsonl").exists()
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        boxes = read_crops(folder)[0]
        assert sorted(boxes) == names and all(w == h for _, _, w, h in boxes.values())
