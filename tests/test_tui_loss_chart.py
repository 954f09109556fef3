"""The loss chart draws raw and smoothed loss against step with axes, and the run's validation
loss (metrics rows with `val_loss`) when it has one; the numbers say current, min and max."""

from __future__ import annotations

import json
from pathlib import Path

from textual.app import App, ComposeResult

from sdstudio.core.events import StepEvent
from sdstudio.tui.session import TrainingSession
from sdstudio.tui.widgets.loss_chart import LossChart
from sdstudio.tui.widgets.train_live import TrainingView


class Host(App):
    def compose(self) -> ComposeResult:
        yield TrainingView()


async def test_chart_shows_raw_smoothed_and_validation_loss(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    losses = [0.50, 0.30, 0.45, 0.20, 0.25, 0.10]
    rows = [{"step": i + 1, "loss": v} for i, v in enumerate(losses)]
    rows[2]["val_loss"], rows[5]["val_loss"] = 0.40, 0.22
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    session = TrainingSession(run_dir=run)
    for i, v in enumerate(losses):
        session.apply(StepEvent(step=i + 1, total=6, loss=v, lr=1e-4, images_per_s=1.0, seconds=0.1))

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the chart is built after the first paint
        view = app.query_one(TrainingView)
        view.sync(session)
        await pilot.pause(1.2)  # the chart redraws at most once a second
        chart = view.query_one(LossChart)
        assert chart.numbers == "loss 0.1000 (step 6) · min 0.1000 · max 0.5000 · val 0.2200 (step 6)"
        raw, smoothed, val = chart._data
        assert raw == list(zip(range(1, 7), losses))
        assert smoothed[0] == (1, 0.5) and smoothed[-1][1] > 0.1  # the EMA lags the raw curve
        assert val == [(3, 0.40), (6, 0.22)]
        drawn = chart.query_one("#loss-plot").plt.build()
        assert "step" in drawn and "0.5" in drawn  # an x label and a y scale in loss units
