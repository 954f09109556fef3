"""The studio's rough edges a newcomer hit (issue 21), each checked at 80x24: the prior-preservation
form, a long phase's progress line, which run F3 opens, Escape out of the caption box, the
footers' F-keys, and the grid's column labels."""

from __future__ import annotations

import time
from pathlib import Path

from textual._xterm_parser import XTermParser
from textual.widgets import Input, Select, Static, TextArea

from sdstudio.core.config import build_config
from sdstudio.core.events import ProgressEvent, StepEvent
from sdstudio.core.paths import data_dir
from sdstudio.tui.app import StudioApp
from sdstudio.tui.session import TrainerMessage
from sdstudio.tui.widgets.config_form import ConfigForm
from test_tui_fixtures import make_dataset, make_run

SIZE = (80, 24)


def _studio_on_small_dataset(tmp_path: Path) -> StudioApp:
    """The studio on its Dataset screen, on a 4-image folder (the sample folder has 360)."""
    from sdstudio.tui.screens.dataset import DatasetScreen

    folder = make_dataset(tmp_path / "ds")

    class Studio(StudioApp):
        MODES = {**StudioApp.MODES, "dataset": lambda: DatasetScreen(folder=folder, resolution=32)}

    return Studio(start_screen="dataset")


async def test_loading_the_prior_config_shows_dreambooth_with_prior_preservation(runs_root: Path) -> None:
    prior = data_dir() / "configs" / "demo-dreambooth-prior.toml"
    app = StudioApp(start_screen="train")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        screen.query_one("#toml-path", Input).value = str(prior)
        await pilot.press("escape", "ctrl+o")
        await pilot.pause()
        assert screen.query_one("#field-method", Select).value == "dreambooth+prior"
        shown = {name: screen.query_one(f"#field-{name}", Input).value for name in
                 ("class_prompt", "num_class_images", "prior_loss_weight") if screen.query_one(f"#row-{name}").display}
        assert shown == {"class_prompt": "a purple shape", "num_class_images": "64", "prior_loss_weight": "1"}
        assert screen.query_one("#field-class_data_dir", Input).value.endswith("demo-purple-shape")
        # no setting hidden: those without a row are listed at the end of the form, and counted under it
        assert "snr_gamma = 5" in str(screen.query_one("#form-extra", Static).render())
        assert "snr_gamma" in str(screen.query_one("#also-set", Static).render())
        cfg = build_config({**screen._base, **screen.query_one(ConfigForm).values()}, source="form")
        assert cfg.with_prior_preservation and cfg.resolved_method == "dreambooth"
        # the inline check: an empty class prompt marks its row
        screen.query_one("#field-class_prompt", Input).value = ""
        await pilot.pause()
        await pilot.pause()
        assert screen.query_one("#row-class_prompt").has_class("-invalid")
        # plain DreamBooth hides the class rows and trains without prior preservation
        screen.query_one("#field-method", Select).value = "dreambooth"
        await pilot.pause()
        assert not screen.query_one("#row-class_prompt").display
        assert screen.query_one(ConfigForm).values()["with_prior_preservation"] is False
        # back from Checkpoints, Enter opens the Method list at once (not a scroll box's focus)
        await pilot.press("escape", "f3")
        await pilot.pause()
        await pilot.press("f2")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert screen.query_one("#field-method", Select).expanded


async def test_a_long_phase_shows_its_own_progress_line(runs_root: Path) -> None:
    app = StudioApp(start_screen="train")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.session.state = "running"
        app.post_message(TrainerMessage(ProgressEvent("class images", 16, 64, "", 151.0)))
        await pilot.pause(0.4)
        line = str(app.screen.query_one("#phase", Static).render())
        assert line == "class images 16/64 · ETA 2:31"
        app.post_message(TrainerMessage(StepEvent(1, 300, 0.1, 1e-4, 2.0, 0.5)))  # steps again: the phase is over
        await pilot.pause(0.4)
        assert str(app.screen.query_one("#phase", Static).render()) == ""


async def test_f3_opens_the_run_that_just_finished_not_the_one_shown_before(runs_root: Path) -> None:
    make_run(runs_root, "older-run", state="stopped")
    app = StudioApp(start_screen="checkpoints")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.run.name == "older-run"
        # the palette lists every action of the screen once (w b s r too, usable or not right now)
        commands = list(app.get_system_commands(app.screen))
        titles = [c.title for c in commands]
        assert len(titles) == len(set(titles)) and titles.count("Quit") == 1
        keys = {c.help.removeprefix("key: ").split(" ")[0] for c in commands}
        assert {"w", "b", "s", "r", "e", "f", "c"} <= keys
        await pilot.press("f2")
        time.sleep(0.05)  # a newer mtime for the new run's files
        make_run(runs_root, "just-finished")
        await pilot.press("f3")
        await pilot.pause()
        assert app.screen.run.name == "just-finished"
        labels = [str(label) for label, _ in app.screen.query_one("#run-select", Select)._options]
        assert "no runs yet" not in labels
        # a run chosen by hand stays while nothing newer comes along
        app.screen.query_one("#run-select", Select).value = str(runs_root / "older-run")
        await pilot.press("f2", "f3")
        await pilot.pause()
        assert app.screen.run.name == "older-run"


async def test_f3_prefers_the_running_run_to_a_newer_finished_one(runs_root: Path) -> None:
    from sdstudio.core.runs.lock import acquire

    running = make_run(runs_root, "training-now", state="running")
    lock = acquire(running.path)  # a trainer holds it, as `train_with_commands` does
    try:
        time.sleep(0.05)
        make_run(runs_root, "newer-but-finished")
        app = StudioApp(start_screen="train")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("f3")
            await pilot.pause()
            assert app.screen.run.name == "training-now"
    finally:
        lock.release()


async def test_escape_then_a_digit_leaves_the_caption_box_even_as_one_key(runs_root: Path, tmp_path: Path) -> None:
    """Escape and "2" that reach the studio in one read (typed fast, or one SSH packet) are one key
    to Textual ("™"); the caption must not get it, and the Train screen must open."""
    from sdstudio.tui.screens.dataset import DatasetScreen

    app = _studio_on_small_dataset(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DatasetScreen)
        caption = screen.query_one("#ds-caption", TextArea)
        caption.focus()
        await pilot.pause(0.3)
        before = caption.text
        assert before  # the selected file's caption
        await pilot.press("ctrl+a")  # selects all, as in an editor
        assert caption.selected_text == before
        await pilot.press(*[key.key for key in XTermParser().feed("\x1b2")])
        await pilot.pause()
        assert app.current_mode == "train"
        assert caption.text == before


async def test_every_footer_shows_f1_to_f5_in_80_columns(runs_root: Path, tmp_path: Path) -> None:
    from textual.widgets._footer import FooterKey

    app = _studio_on_small_dataset(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        for mode in ("dataset", "train", "checkpoints", "generate", "merge"):
            await app.switch_mode(mode)
            for _ in range(40):  # the footer is laid out a few frames after the switch
                await pilot.pause(0.05)
                keys = {k.key: k for k in app.screen.query(FooterKey)}
                if all(keys.get(f"f{n}") is not None and keys[f"f{n}"].region.width for n in range(1, 6)):
                    break
            palette = keys["ctrl+p"].region  # docked right: a key under it is hidden
            for n in range(1, 6):
                key = keys.get(f"f{n}")
                assert key is not None and key.region.width > 0 and key.region.right <= SIZE[0], \
                    f"F{n} is not shown whole on {mode} at 80 columns"
                assert not key.region.overlaps(palette), f"F{n} is hidden under ^p palette on {mode}"


def test_grid_columns_name_step_and_kind_before_the_run(runs_root: Path) -> None:
    from PIL import Image, ImageDraw

    from sdstudio.core.generation.compare import plan_variants
    from sdstudio.core.generation.contact_sheet import MIN_CELL, _font, _label_lines

    run = make_run(runs_root, "dreambooth-20261205-140233-pink-heart", checkpoints=(10, 20))
    labels = [v.label for v in plan_variants(["demo"], [str(run.path)])]
    assert labels == ["step 10 checkpoint · dreambooth-20261205-140233-pink-heart",
                      "step 20 checkpoint · dreambooth-20261205-140233-pink-heart"]
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    heads = [_label_lines(draw, label, _font(max(12, min(MIN_CELL // 12, 20))), MIN_CELL) for label in labels]
    assert [h[0] for h in heads] == ["step 10 checkpoint", "step 20 checkpoint"]  # what a cell shows first
