"""The live half of the Train screen: state, numbers, loss curve, newest samples, log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Log, Sparkline, Static

from sdstudio.tui.images import Picture
from sdstudio.tui.widgets.loss_chart import LossChart
from sdstudio.tui.session import FAILED, IDLE, STARTING, STOPPING, TrainingSession, format_eta

THUMBS = 3
STATE_TEXT = {
    IDLE: "Idle: fill in the form, then ctrl+r starts a run",
    STARTING: "Starting… (loading torch, diffusers and the model)",
    "running": "Running",
    STOPPING: "Stopping… (finishing the step, saving a checkpoint)",
    "finished": "Finished",
    "stopped": "Stopped",
    FAILED: "Failed",
}


def stats_line(s: TrainingSession) -> str:
    if s.state in (IDLE, STARTING) and not s.step:
        return ""
    parts = [f"step {s.step}/{s.total}"]
    if s.loss is not None:
        parts.append(f"loss {s.loss:.4f}")
    if s.images_per_s is not None:
        parts.append(f"{s.images_per_s:.2f} img/s")
    if s.busy and (s.progress is None or s.eta_seconds() is not None):  # a phase's line has its own ETA
        parts.append(f"ETA {format_eta(s.eta_seconds())}")
    if s.lr is not None:
        parts.append(f"lr {s.lr:.2e}")
    if s.gpu_mem_gib is not None:
        parts.append(f"GPU {s.gpu_mem_gib:.1f} GiB")
    return " · ".join(parts)


class TrainingView(Vertical):
    """Draws a TrainingSession; `sync()` is cheap when nothing changed."""

    DEFAULT_CSS = """
    TrainingView { width: 1fr; padding: 0 1; }
    TrainingView #state { text-style: bold; }
    TrainingView #state.-failed { color: $error; }
    TrainingView #state.-stopping { color: $warning; }
    TrainingView #phase { color: $accent; text-style: bold; height: auto; }
    TrainingView #loss { height: 1; margin: 0; }
    TrainingView LossChart { height: 1fr; min-height: 8; }
    TrainingView #thumbs { height: auto; max-height: 8; }
    TrainingView #thumbs Picture { width: 14; height: auto; max-height: 7; margin-right: 1; }
    TrainingView #log { height: 1fr; min-height: 3; border-top: solid $panel; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._version = -1
        self._log_seen = 0
        self._samples: tuple[Path, ...] = ()
        self._val_stamp: Any = None
        self._val: list[tuple[int, float]] = []

    def compose(self) -> ComposeResult:
        yield Static(STATE_TEXT[IDLE], id="state")
        yield Static("", id="stats", classes="muted")
        yield Static("", id="phase")  # the long phase under way: what, k/N, ETA

    def on_mount(self) -> None:
        # The rest is empty until a run starts: it is built after the first paint, which it would slow.
        self.call_after_refresh(self._build_rest)

    def _build_rest(self) -> None:
        self.mount_all([
            Sparkline([], id="loss"),  # the compact form
            LossChart(id="loss-chart"),
            Label("", id="val-label", classes="muted"),
            Label("samples", id="samples-label", classes="muted"),
            Horizontal(*(Picture(None, id=f"thumb-{i}") for i in range(THUMBS)), id="thumbs"),
            Log(id="log", max_lines=1000),  # plain lines: RichLog imports rich.pretty (and attrs)
        ])
        self._built = True
        self._version = -1  # draw everything on the next sync

    def sync(self, s: TrainingSession) -> None:
        if s.version == self._version or not getattr(self, "_built", False):
            return
        self._version = s.version
        state = self.query_one("#state", Static)
        text = STATE_TEXT.get(s.state, s.state)
        if s.state == FAILED and s.error:
            text = f"Failed: {s.error}"
        elif s.run_dir is not None and s.state != IDLE:
            text = f"{text}  {s.run_dir.name}"
        state.update(text)
        state.set_class(s.state == FAILED, "-failed")
        state.set_class(s.state == STOPPING, "-stopping")
        self.query_one("#stats", Static).update(stats_line(s))
        self.query_one("#phase", Static).update(s.progress.line() if s.progress is not None else "")
        self.query_one("#loss", Sparkline).data = list(s.losses)
        val = self._val_points(s)
        self.query_one(LossChart).update_data(s.raw_points, s.smooth_points, val)
        val_text = ""
        if val:
            step, last = val[-1]
            low_step, low = min(val, key=lambda p: p[1])
            val_text = f"validation loss {last:.4f} at {step} · lowest {low:.4f} at {low_step}" \
                + (f" · on {s.val_set}" if s.val_set else "")
        self.query_one("#val-label", Label).update(val_text)  # a new run starts without the last one's
        if s.samples != self._samples:
            self._samples = s.samples
            for i in range(THUMBS):
                self.query_one(f"#thumb-{i}", Picture).show(s.samples[i] if i < len(s.samples) else None)
            if s.sample_step is not None:
                self.query_one("#samples-label", Label).update(f"samples at step {s.sample_step}")
        log = self.query_one("#log", Log)
        if len(s.log) < self._log_seen:  # a new run started
            log.clear()
            self._log_seen = 0
        if len(s.log) > self._log_seen:
            follow = log.is_vertical_scroll_end or log.max_scroll_y == 0  # unless scrolled up to read
            log.write_lines(s.log[self._log_seen:], scroll_end=False)
            if follow:  # after the layout has grown the scroll range (also when written off screen)
                log.call_after_refresh(log.scroll_end, animate=False)
        self._log_seen = len(s.log)

    def _val_points(self, s: TrainingSession) -> list[tuple[int, float]]:
        """Validation loss: from the trainer's events in-process, else from the run's metrics.jsonl
        (rows with `val_loss`, re-read when it changed) for a run another process trains."""
        if s.val_losses:
            return list(s.val_losses)
        if s.run_dir is None:
            return []
        metrics = s.run_dir / "metrics.jsonl"
        try:
            stamp = (metrics, metrics.stat().st_mtime_ns)
        except OSError:
            return []
        if stamp != self._val_stamp:
            from sdstudio.core.runs.run_dir import RunDir

            self._val_stamp = stamp
            self._val = sorted(RunDir(s.run_dir).validation_losses().items())
        return self._val

    @property
    def shown_samples(self) -> tuple[Path, ...]:
        return self._samples
