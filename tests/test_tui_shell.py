"""The studio shell: first screen without torch, keys 1-5 and F1-F5, user keymap and theme, palette."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdstudio.core.errors import SdstudioError
from sdstudio.tui.app import StudioApp
from sdstudio.tui.settings import load_settings
from test_tui_fixtures import make_run, wait_for

FIRST_PAINT = r"""
import json, sys
from sdstudio.tui.app import StudioApp
seen = {}
async def first_paint(pilot):
    await pilot.pause()
    seen["screen"] = type(pilot.app.screen).__name__
    seen["heavy"] = [m for m in ("torch", "diffusers", "transformers", "accelerate") if m in sys.modules]
    pilot.app.exit()
StudioApp().run(headless=True, size=(80, 24), auto_pilot=first_paint)
print(json.dumps(seen))
"""


def test_first_screen_paints_without_importing_torch(tmp_path: Path) -> None:
    env = dict(os.environ, SDSTUDIO_RUNS=str(tmp_path), SDSTUDIO_CONFIG=str(tmp_path / "none.toml"))
    out = subprocess.run([sys.executable, "-c", FIRST_PAINT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"screen": "TrainScreen", "heavy": []}


async def test_number_keys_switch_screens(runs_root: Path) -> None:
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.current_mode == "train"
        await pilot.press("3")
        assert app.current_mode == "checkpoints"
        await pilot.press("2")
        assert app.current_mode == "train"
        footer_keys = [b.binding.key for b in app.screen.active_bindings.values() if b.binding.show]
        assert all(f"f{k}" in footer_keys for k in "12345")  # the keys that work from anywhere


async def test_keymap_and_theme_come_from_the_config_file(runs_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('theme = "light"\n[keymap]\n"screen.checkpoints" = "f3"\n"checkpoints.export" = "x"\n')
    monkeypatch.setenv("SDSTUDIO_CONFIG", str(config))
    make_run(runs_root)
    app = StudioApp(settings=load_settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not app.current_theme.dark
        await pilot.press("3")  # remapped away
        assert app.current_mode == "train"
        await pilot.press("f3")
        assert app.current_mode == "checkpoints"
        await pilot.pause()
        keys = {b.binding.id: b.binding.key for b in app.screen.active_bindings.values()}
        assert keys["checkpoints.export"] == "x"
        await pilot.press("x")  # the remapped export key runs the export (no real weights here: it fails)
        await wait_for(pilot, lambda: any(n.title == "Export failed" for n in app._notifications))
        assert "step-000020" in [n.message for n in app._notifications if n.title == "Export failed"][0]
        await pilot.press("ctrl+t")
        assert app.current_theme.dark


async def test_palette_offers_every_action_of_the_screen(runs_root: Path) -> None:
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Start a training run with this form", "Go to the Checkpoints screen",
                "Write the form to the TOML file named in the File row"} <= titles
        await pilot.press("3")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Choose another run" in titles


def test_broken_settings_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('images = "jpeg"\n')
    with pytest.raises(SdstudioError, match=r"config.toml: 'images' must be one of"):
        load_settings(config)
    config.write_text('[keymap]\n"screen.train" = 2\n')
    with pytest.raises(SdstudioError, match=r"'keymap.screen.train'"):
        load_settings(config)
