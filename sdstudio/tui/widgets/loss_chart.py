"""The loss chart: raw and smoothed training loss against step, validation loss when the run logs it,
with axes (textual-plotext, a well-kept Textual wrapper of plotext) and the numbers beside it.

A sparkline's min-max scale makes noise look like a trend; a chart with a y axis shows how big
the movement really is. The plot is rebuilt at most once a second, and only when data changed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

REDRAW_S = 1.0


def step_ticks(first: int, last: int, most: int = 6) -> list[int]:
    """At most `most` whole, round steps from `first` to `last` (1, 2 or 5 x 10^k apart): steps
    are counts, and plotext's own ticks split them ("75.8 150.5")."""
    span = max(1, last - first)
    gap = 1
    while span / gap > most - 1:
        gap = _next_round(gap)  # 1, 2, 5, 10, 20, 50 ...
    start = -(-first // gap) * gap
    return list(range(start, last + 1, gap)) or [first]


def _next_round(gap: int) -> int:
    digits = str(gap)
    lead, zeros = int(digits[0]), len(digits) - 1
    return {1: 2, 2: 5, 5: 10}[lead] * 10 ** zeros


def loss_numbers(raw: Sequence[tuple[int, float]], val: Sequence[tuple[int, float]]) -> str:
    """`loss 0.1234 (step 40) · min 0.0912 · max 0.4410 · val 0.1190 (step 40)`, or a hint."""
    if not raw:
        return "loss: no steps yet"
    values = [v for _, v in raw]
    step, now = raw[-1]
    text = f"loss {now:.4f} (step {step}) · min {min(values):.4f} · max {max(values):.4f}"
    if val:
        vstep, vnow = val[-1]
        text += f" · val {vnow:.4f} (step {vstep})"
    return text


class LossChart(Vertical):
    """`update_data(raw, smoothed, val)`: lists of (step, value)."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 7; }
    LossChart > #loss-numbers { height: 1; color: $text-muted; }
    LossChart > PlotextPlot { height: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._data: tuple[list[tuple[int, float]], ...] = ([], [], [])
        self._drawn_key: Any = None
        self._drawn_at = 0.0
        self._pending = False

    def compose(self) -> ComposeResult:
        yield Static(loss_numbers([], []), id="loss-numbers")  # the plot is mounted with the first points

    def _plot(self) -> Any:
        """The PlotextPlot, created on first use: plotext's import stays out of the studio's first paint."""
        from textual_plotext import PlotextPlot

        plots = self.query(PlotextPlot)
        if plots:
            return plots.first()
        plot = PlotextPlot(id="loss-plot")
        self.mount(plot)
        return plot

    @property
    def numbers(self) -> str:
        return loss_numbers(self._data[0], self._data[2])

    def update_data(self, raw: Sequence[tuple[int, float]], smoothed: Sequence[tuple[int, float]],
                    val: Sequence[tuple[int, float]] = ()) -> None:
        self._data = (list(raw), list(smoothed), list(val))
        self.query_one("#loss-numbers", Static).update(self.numbers)
        wait = self._drawn_at + REDRAW_S - time.monotonic()
        if wait > 0:
            if not self._pending:
                self._pending = True
                self.set_timer(wait, self._draw)
            return
        self._draw()

    def _draw(self) -> None:
        self._pending = False
        raw, smoothed, val = self._data
        if not raw:
            return
        key = (len(raw), raw[-1] if raw else None, len(val))
        if key == self._drawn_key:
            return
        self._drawn_key, self._drawn_at = key, time.monotonic()
        plot = self._plot()
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.xlabel("step")
        if raw:
            plt.plot([s for s, _ in raw], [v for _, v in raw], marker="dot", color="gray", label="raw")
        if smoothed:
            plt.plot([s for s, _ in smoothed], [v for _, v in smoothed], marker="braille", color="cyan",
                     label="smoothed")
        if val:
            plt.plot([s for s, _ in val], [v for _, v in val], marker="hd", color="orange", label="val")
        steps = [s for s, _ in raw] + [s for s, _ in val]
        plt.xticks(step_ticks(min(steps), max(steps)))
        plot.refresh()
