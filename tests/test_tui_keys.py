"""Keys never trap: from inside a focused text field every screen is reachable, by F1-F5 and by
Escape-then-digit; the palette lists the five screens wherever it opens; each screen focuses its
first useful field (Generate: the prompt)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from sdstudio.tui.app import SCREENS, StudioApp

MODES = [mode for mode, *_ in SCREENS]
KEY = {mode: key for mode, _, _, key, _ in SCREENS}


async def _focus_a_text_field(app: StudioApp, pilot) -> Input | None:  # type: ignore[no-untyped-def]
    """Put the focus in the screen's first text field (Checkpoints has none: None)."""
    await pilot.pause()
    field = next((w for w in app.screen.query(Input) if w.display and w.focusable), None)
    if field is not None:
        field.focus()
        await pilot.pause()
        assert app.screen.focused is field
    return field


@pytest.mark.parametrize("way", ["fkey", "escape-digit"])
async def test_every_screen_is_reachable_from_inside_a_field(way: str, runs_root: Path) -> None:
    """A round trip through the five screens, each left from inside its first text field."""
    app = StudioApp(start_screen=MODES[-1])
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.pause()
        for target in MODES:
            here = app.current_mode
            field = await _focus_a_text_field(app, pilot)
            before = field.value if field is not None else None
            keys = [f"f{KEY[target]}"] if way == "fkey" else ["escape", KEY[target]]
            await pilot.press(*keys)
            assert app.current_mode == target, f"{' '.join(keys)} from a field of {here}"
            if field is not None:
                assert field.value == before  # the keys switched screens; they typed nothing
        footer_keys = {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show}
        assert {"f1", "f2", "f3", "f4", "f5"} <= footer_keys


async def test_palette_lists_the_five_screens_from_inside_a_field(runs_root: Path) -> None:
    app = StudioApp(start_screen="generate")
    async with app.run_test(size=(100, 32)) as pilot:
        await _focus_a_text_field(app, pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {f"Go to the {m.title()} screen" for m in MODES} <= titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"merge screen")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.current_mode == "merge"


async def test_generate_first_keystroke_lands_in_prompt(runs_root: Path) -> None:
    app = StudioApp(start_screen="train")
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.pause()
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("a", " ", "c", "a", "t")
        assert app.screen.query_one("#gen-prompt", Input).value == "a cat"
        assert app.screen.query_one("#gen-model", Input).value == "demo"
