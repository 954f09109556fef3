"""Snapshots of the studio's Train and Checkpoints screens and the resume offer, at 80x24,
with the half-cell renderer pinned (conftest sets SDSTUDIO_IMAGES=halfcell)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from sdstudio.core.paths import PROJECT_ROOT
from sdstudio.tui.app import StudioApp
from test_tui_fixtures import make_run


@pytest.fixture()
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDSTUDIO_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(PROJECT_ROOT)  # the form shows paths relative to the project, the same on every machine


async def _relative_dataset(pilot) -> None:  # type: ignore[no-untyped-def]
    """Paths as the project names them, so the snapshots match in any checkout folder."""
    train = next(s for s in pilot.app.screen_stack if s.query("#field-train_data_dir"))
    train.query_one("#field-train_data_dir", Input).value = "data/shapes"
    train.query_one("#toml-path", Input).value = "data/configs/demo-text2image.toml"
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()  # the memory estimate under the form (a thread)
    await pilot.pause()


def test_train_screen_idle(snap_compare, runs_root: Path, no_user_config: None) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(StudioApp(), terminal_size=(80, 24), run_before=_relative_dataset)


def test_train_screen_shows_a_field_error(snap_compare, runs_root: Path, no_user_config: None) -> None:  # type: ignore[no-untyped-def]
    async def bad_rank(pilot) -> None:  # type: ignore[no-untyped-def]
        await _relative_dataset(pilot)
        pilot.app.screen.query_one("#field-rank", Input).value = "0"
        await pilot.pause()

    assert snap_compare(StudioApp(), terminal_size=(80, 24), run_before=bad_rank)


def test_checkpoints_screen_compare(snap_compare, runs_root: Path, no_user_config: None) -> None:  # type: ignore[no-untyped-def]
    make_run(runs_root)
    assert snap_compare(StudioApp(start_screen="checkpoints"), terminal_size=(80, 24), press=["k", "f", "c", "j"])


def test_resume_offer(snap_compare, runs_root: Path, no_user_config: None) -> None:  # type: ignore[no-untyped-def]
    make_run(runs_root, name="cut-off-run", steps=(0, 10), checkpoints=(10,), state="stopped")
    (runs_root / "cut-off-run" / "status.json").write_text(
        '{"state": "stopped", "step": 10, "total": 40, "error": null, "pid": null, "updated": 0}')
    assert snap_compare(StudioApp(), terminal_size=(80, 24), run_before=_relative_dataset)


def _contact_sheet_run(root: Path) -> None:
    """6 steps x (2 prompts x 4 seeds) = 48 samples, each a real picture from the sample data."""
    from PIL import Image

    from sdstudio.core.paths import data_dir
    from sdstudio.core.runs.run_dir import RunDir

    pictures = sorted((data_dir() / "shapes").glob("*.png"))
    run = RunDir(root / "sheet-run")
    run.write_config({"pretrained_model_name_or_path": "demo", "max_train_steps": 50}, {"version": "test"})
    for r, step in enumerate(range(0, 60, 10)):
        for p, prompt in enumerate(("a red circle", "a blue square")):
            for seed in range(4):
                picture = pictures[(r * 8 + p * 4 + seed) % len(pictures)]
                run.add_sample(step, p, prompt, seed, Image.open(picture).convert("RGB"))
    for step in range(1, 51):
        run.append_metrics({"step": step, "loss": round(0.5 / step, 4), "lr": 1e-4})


def test_checkpoints_contact_sheet_shows_thumbnails(snap_compare, runs_root: Path,  # type: ignore[no-untyped-def]
                                                    no_user_config: None) -> None:
    """The grid cells are pictures (half-cell renderer pinned), with the 'N shown →' hint."""
    _contact_sheet_run(runs_root)

    async def look(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.pause(0.3)
        sheet = pilot.app.screen.query_one("#grid")
        assert (len(sheet.rows), len(sheet.titles)) == (6, 8)
        shown = [c for c in sheet.query("Cell") if c.display]
        assert shown and all(c.query_one("LazyImage").image is not None for c in shown)
        assert sheet.hint.startswith("8 samples, ") and sheet.hint.split(" shown")[1].startswith(" →")
        scroll = sheet.query_one("#sheet-scroll")
        for _ in range(50):  # the cursor follows the newest step: the sheet scrolls down to it
            if scroll.scroll_y > 0 and scroll.scroll_y == scroll.max_scroll_y:
                break
            await pilot.pause(0.1)
        await pilot.pause(0.3)  # the pictures' widgets are mounted and painted

    assert snap_compare(StudioApp(start_screen="checkpoints"), terminal_size=(80, 24), run_before=look)
