"""The studio shows which checkpoint is best: score columns on Checkpoints (sort, mark, jump, chart) and the
validation loss beside the loss curve on Train."""

from __future__ import annotations

from pathlib import Path

from textual.geometry import Region
from textual.widgets import DataTable, Label

from sdstudio.core.events import ValidationLossEvent
from sdstudio.core.training.scoring import RunScorer
from sdstudio.tui.app import StudioApp
from sdstudio.tui.screens.checkpoints import CheckpointsScreen
from sdstudio.tui.widgets.contact_sheet import ContactSheet
from sdstudio.tui.widgets.loss_chart import LossChart
from sdstudio.tui.widgets.scores_table import ScoresPanel
from sdstudio.tui.widgets.train_live import TrainingView
from test_scores import drift_run


async def test_checkpoints_screen_shows_scores_sorts_and_jumps_to_the_pick(tmp_path: Path, runs_root: Path) -> None:
    run = drift_run(runs_root)  # steps 0 (base), 10 (subject learned), 20 (drifted); scored by the judge
    RunScorer(run, ["demo"]).score()
    app = StudioApp(run_dir=run.path)
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CheckpointsScreen)
        panel = screen.query_one(ScoresPanel)
        assert panel.display and panel.recommended == 10
        scores = panel.query_one("#scores", DataTable)
        titles = [str(c.label) for c in scores.columns.values()]
        assert titles == ["step ↓", "val loss", "subject", "prompt", "nearest"]
        cells = [[str(c) for c in scores.get_row_at(i)] for i in range(scores.row_count)]
        assert [r[0] for r in cells] == ["  base", "▶ 10", "  20"]
        assert cells[1][2:4] == ["1.00", "1.00"] and cells[2][3] == "0.00"  # drift shows in the prompt column

        await pilot.press("s", "s")  # step -> subject -> prompt (best first; the base stays on top)
        assert panel.sort_key == "demo_prompt" and panel.ordered_steps() == [0, 10, 20]
        await pilot.press("s", "s")
        assert panel.sort_key == "val_loss" and panel.ordered_steps() == [0, 20, 10]

        grid = screen.query_one("#grid", ContactSheet)
        assert screen.selected()[0] == 20  # a freshly opened run shows its newest step
        await pilot.press("b")
        assert screen.selected()[0] == 10 and scores.cursor_row == panel.ordered_steps().index(10)
        assert grid.cursor[0] == 1  # the contact sheet's row of step 10
        chart = panel.query_one("#score-chart")
        assert chart.size.width > 20 and chart.size.height > 5


async def test_a_run_without_scores_hides_the_panel_and_the_key(runs_root: Path) -> None:
    from test_tui_fixtures import make_run

    make_run(runs_root)
    app = StudioApp(start_screen="checkpoints")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not app.screen.query_one(ScoresPanel).display
        assert app.screen.check_action("best", ()) is False


async def test_train_screen_shows_the_validation_loss_per_checkpoint(runs_root: Path) -> None:
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        view = app.screen.query_one(TrainingView)
        await pilot.pause(0.2)
        assert str(view.query_one("#val-label", Label).render()) == ""
        for step, loss in ((50, 0.036), (100, 0.026), (150, 0.027)):
            app.session.apply(ValidationLossEvent(step, loss, 1.2, "training images at fixed noise"))
        await pilot.pause(0.4)
        assert view.query_one(LossChart)._data[2] == [(50, 0.036), (100, 0.026), (150, 0.027)]
        label = str(view.query_one("#val-label", Label).render())
        assert "0.0270 at 150" in label and "lowest 0.0260 at 100" in label and "training images at fixed noise" in label


async def test_the_recommendation_says_how_sure_it_is(runs_root: Path) -> None:
    from sdstudio.core.training.intervals import bootstrap_interval
    from sdstudio.core.training.recommend import recommend
    from sdstudio.core.training.scoring import ScoreRow, ScoreTable, write_scores

    run = drift_run(runs_root)
    hits = {0: [0, 0, 0, 0], 10: [1, 1, 1, 1], 20: [1, 1, 1, 0]}  # 4 samples: 20 and 10 overlap
    rows = [ScoreRow(step, step > 0, None, {"demo_subject": sum(h) / 4, "demo_prompt": 1.0}, images=8,
                     intervals={"demo_subject": bootstrap_interval(h), "demo_prompt": (1.0, 1.0)})
            for step, h in hits.items()]
    write_scores(run, ScoreTable(rows, recommend(rows)))
    app = StudioApp(run_dir=run.path)
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.pause()
        reason = app.screen.query_one("#scores-reason")
        shown = " ".join(strip.text.strip() for strip in reason.render_lines(Region(0, 0, *reason.size)))
        # what the panel's lines show (the reason goes on beyond them): the doubt and the interval first
        assert shown.startswith("▶ recommended (b jumps to it): step 20, not distinguishable from step 10 "
                                "(intervals overlap): subject 0.75 [0.25–1.00]"), shown


async def test_b_shows_the_whole_reason_that_a_small_terminal_cuts(runs_root: Path) -> None:
    run = drift_run(runs_root)
    RunScorer(run, ["demo"]).score()
    app = StudioApp(run_dir=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        panel = app.screen.query_one(ScoresPanel)
        reason = panel.query_one("#scores-reason")
        shown = " ".join(strip.text.strip() for strip in reason.render_lines(Region(0, 0, *reason.size)))
        assert panel.reason and panel.reason not in shown  # at 80 columns the panel cuts it
        await pilot.press("b")
        await pilot.pause()
        assert any(panel.reason in str(n.message) for n in app._notifications), "b must show the whole reason"
