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
