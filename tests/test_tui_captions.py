"""The caption review view at 80x24: opened from the Dataset screen, captions the folder in a worker,
then accept / edit / reject by keys; nothing is written before Escape finishes the review."""

from __future__ import annotations

import json
import random
from pathlib import Path

from textual.widgets import Input, TextArea

from sdstudio.core.captions import log
from sdstudio.demo.shapes import random_scene, render
from sdstudio.tui.screens.captions import CaptionScreen
from sdstudio.tui.screens.dataset import DatasetScreen
from tui_host import ScreenHost

SCENES = [("red", "star", "white"), ("blue", "circle", "gray"), ("green", "triangle", "black")]


def _folder(folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    rng = random.Random(1)
    captions = []
    for i, (colour, shape, bg) in enumerate(SCENES):
        scene = random_scene(rng, colour, shape, bg)
        render(scene).save(folder / f"{i}.png")
        captions.append(scene.caption)
    return captions


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


async def _settle(app, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_review_accept_edit_reject_then_escape_writes_only_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    truth = _folder(folder)
    app = ScreenHost(DatasetScreen(folder=folder, resolution=64))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        await pilot.press("ctrl+e")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CaptionScreen) and screen.focused.id == "cap-model"
        screen.query_one("#cap-trigger", Input).value = "zz"
        await pilot.press("enter")  # in the model field: start captioning with the demo captioner
        await _settle(app, pilot)
        status = str(screen.query_one("#cap-status").render())
        assert status.startswith("1/3 0.png") and "trigger: zz" in status
        assert screen.query_one("#cap-new", TextArea).text == f"zz, {truth[0]}"
        before = _files(folder)
        await pilot.press("a")  # accept the first
        await pilot.press("e")  # edit the second
        assert isinstance(screen.focused, TextArea)
        await pilot.press("end", *" glossy")
        await pilot.press("escape")  # leaves the box, not the review
        assert app.screen is screen and screen.focused is None
        await pilot.press("a")
        await pilot.press("r")  # reject the third
        assert _files(folder) == before  # nothing written while reviewing
        assert "2 accepted, 1 rejected" in str(screen.query_one("#cap-status").render())
        await pilot.press("escape")  # finish: write the accepted ones
        await _settle(app, pilot)
        assert isinstance(app.screen, DatasetScreen)
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert rows == [{"file_name": "0.png", "text": f"zz, {truth[0]}"},
                    {"file_name": "1.png", "text": f"zz, {truth[1]} glossy"}]
    assert log.read(folder)[-1]["reviewed"] is True


async def test_escape_leaves_the_setup_fields_and_q_discards(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    _folder(folder)
    app = ScreenHost(CaptionScreen(folder))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        for field in ("#cap-model", "#cap-trigger", "#cap-prompt"):
            screen.query_one(field, Input).focus()
            await pilot.press("escape")
            assert app.screen is screen and screen.focused is None
        await pilot.click("#cap-run")
        await _settle(app, pilot)
        await pilot.press("A")  # accept all ...
        await pilot.press("q")  # ... then leave without writing
        await pilot.pause()
        assert app.screen is not screen
    assert not (folder / "metadata.jsonl").exists() and not (folder / "captions.log.jsonl").exists()
