"""Checkpoints screen on a run folder written by someone else: grid, preview, favourites, follow."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from sdstudio.core.runs.run_dir import RunDir
from sdstudio.tui.app import StudioApp
from sdstudio.tui.screens.checkpoints import CheckpointsScreen
from sdstudio.tui.widgets.contact_sheet import ContactSheet
from sdstudio.tui.widgets.sample_preview import SamplePreview
from test_tui_fixtures import make_run


async def test_grid_preview_favourites_compare_and_follow(runs_root: Path) -> None:
    run = make_run(runs_root, state="running")
    app = StudioApp(run_dir=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CheckpointsScreen)
        sheet = screen.query_one("#grid", ContactSheet)
        assert (len(sheet.rows), len(sheet.titles)) == (3, 2)  # steps 0, 10, 20 x two prompts
        preview = screen.query_one(SamplePreview)
        assert (preview.current.step, preview.current.seed, preview.current.loss) == (20, 7, 0.025)

        await pilot.press("k", "l")  # up one step, right one prompt (vim keys)
        assert (preview.current.step, preview.current.prompt) == (10, "a blue square")
        assert preview.current.loss == 0.05 and preview.current.checkpoint

        await pilot.press("f")  # favourites live in the run folder, for every viewer
        assert json.loads((run.path / "favourites.json").read_text()) == {"steps": [10]}
        assert preview.current.favourite

        await pilot.press("c", "j")  # pin step 10, move to 20: side by side, same prompt
        assert (preview.pinned.step, preview.current.step) == (10, 20)
        assert preview.pinned.prompt == preview.current.prompt == "a blue square"

        # another process writes a new step: the screen follows it without a key press
        RunDir(run.path).add_sample(30, 0, "a red circle", 7, Image.new("RGB", (32, 32), "red"))
        screen.poll()
        await pilot.pause()
        assert len(sheet.rows) == 4 and preview.current.step == 30


async def test_export_on_a_step_without_checkpoint_says_which_exist(runs_root: Path) -> None:
    make_run(runs_root, checkpoints=(20,))
    app = StudioApp(start_screen="checkpoints")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("up", "e")
        messages = [n.message for n in app._notifications]
        assert any("No checkpoint at step 10 (checkpoints: 20)" in m for m in messages), messages
