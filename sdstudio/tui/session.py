"""What the studio knows about the training it runs: a plain model the Train screen draws.

The worker thread never touches this object; its events arrive as `TrainerMessage`s on the
App's message queue and are applied here on the UI thread.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.message import Message

from sdstudio.core.events import (
    CheckpointEvent,
    Event,
    FailedEvent,
    FinishedEvent,
    LogEvent,
    ProgressEvent,
    SampleEvent,
    StepEvent,
    TrainerControl,
    ValidationLossEvent,
    format_duration,
)

IDLE, STARTING, RUNNING, STOPPING, FINISHED, STOPPED, FAILED = (
    "idle", "starting", "running", "stopping", "finished", "stopped", "failed")
BUSY = (STARTING, RUNNING, STOPPING)
MAX_POINTS = 4000  # loss history kept for the sparkline; older points are thinned out


class TrainerMessage(Message):
    """One trainer event, posted from the worker thread (post_message is thread-safe)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


format_eta = format_duration  # m:ss or h:mm:ss, "--:--" when unknown


@dataclass
class TrainingSession:
    state: str = IDLE
    run_dir: Path | None = None
    step: int = 0
    total: int = 0
    loss: float | None = None
    lr: float | None = None
    images_per_s: float | None = None
    gpu_mem_gib: float | None = None
    losses: list[float] = field(default_factory=list)  # smoothed, one per step received
    val_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss) per checkpoint
    val_set: str = ""  # what the validation loss is measured on
    raw_points: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) as the trainer reported
    smooth_points: list[tuple[int, float]] = field(default_factory=list)  # (step, smoothed loss)
    log: list[str] = field(default_factory=list)
    samples: tuple[Path, ...] = ()
    sample_step: int | None = None
    error: str | None = None
    progress: ProgressEvent | None = None  # the long phase under way (class images, caching, ...), if any
    control: TrainerControl | None = None
    version: int = 0
    _ema: float | None = None
    _pending_end: str | None = None  # how the run ended, applied once the thread has exited
    _times: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=20))

    @property
    def busy(self) -> bool:
        return self.state in BUSY

    def begin(self, control: TrainerControl, total: int) -> None:
        """Reset for a new run (the previous run's numbers go away)."""
        fresh = TrainingSession(state=STARTING, control=control, total=total)
        self.__dict__.update(fresh.__dict__)
        self.log_line("starting: loading the model (torch, diffusers)…")

    def log_line(self, text: str) -> None:
        self.log.append(text)
        if len(self.log) > 2000:
            del self.log[:1000]
        self.version += 1

    def eta_seconds(self) -> float | None:
        if len(self._times) < 2 or not self.total:
            return None
        (t0, s0), (t1, s1) = self._times[0], self._times[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return (self.total - self.step) * (t1 - t0) / (s1 - s0)

    def _add_loss(self, step: int, loss: float) -> None:
        beta = 0.9  # exponential moving average started at the first loss (no warm-up bias)
        self._ema = loss if self._ema is None else beta * self._ema + (1 - beta) * loss
        self.losses.append(self._ema)
        self.raw_points.append((step, loss))
        self.smooth_points.append((step, self._ema))
        if len(self.losses) > MAX_POINTS:
            self.losses = self.losses[::2]
            self.raw_points = self.raw_points[::2]
            self.smooth_points = self.smooth_points[::2]

    def apply(self, event: Any) -> None:
        """Fold one trainer event into the session."""
        if isinstance(event, StepEvent):
            if self.state == STARTING:
                self.state = RUNNING
            self.step, self.total = event.step, event.total
            self.progress = None  # a step is taken between phases, never inside one
            self.loss, self.lr = event.loss, event.lr
            self.images_per_s, self.gpu_mem_gib = event.images_per_s, event.gpu_mem_gib
            self._times.append((time.monotonic(), event.step))
            if event.loss == event.loss:  # skip NaN in the curve; the trainer reports it as a failure
                self._add_loss(int(event.step), float(event.loss))
        elif isinstance(event, SampleEvent):
            self.samples, self.sample_step = tuple(event.paths), event.step
            if self.run_dir is None and event.paths:
                self.run_dir = Path(event.paths[0]).parent.parent
            self.log_line(f"step {event.step}: {len(event.paths)} validation sample(s)")
        elif isinstance(event, ValidationLossEvent):
            self.val_losses.append((event.step, event.loss))
            self.val_set = event.measured_on
        elif isinstance(event, CheckpointEvent):
            self.run_dir = Path(event.path).parent.parent
            self.log_line(f"step {event.step}: checkpoint saved ({Path(event.path).name})")
        elif isinstance(event, LogEvent):
            if self.state == STARTING:
                self.state = RUNNING
            prefix = "" if event.level == "info" else f"{event.level}: "
            self.log_line(prefix + event.message)
        elif isinstance(event, ProgressEvent):
            self.progress = None if event.finished else event
        elif isinstance(event, FinishedEvent):
            self.progress = None
            self.run_dir = Path(event.run_dir)
            self.step = event.step
            self._pending_end = STOPPED if event.stopped else FINISHED
            self.log_line(f"{'stopped' if event.stopped else 'finished'} at step {event.step}: {event.run_dir}")
        elif isinstance(event, FailedEvent):
            self.progress = None
            self.error = event.message
            if event.run_dir is not None:
                self.run_dir = Path(event.run_dir)
            self._pending_end = FAILED
            self.log_line(f"failed at step {event.step}: {event.message}")
        self.version += 1

    def request_stop(self) -> bool:
        if not self.busy or self.control is None:
            return False
        self.control.request_stop()
        self.state = STOPPING
        self.log_line("stop requested: finishing the current step…")
        return True

    def thread_exited(self, error: BaseException | None) -> None:
        """The worker thread has really returned: only now is the GPU free again."""
        end = getattr(self, "_pending_end", None)
        if error is not None and end != FAILED:
            self.error = str(error) or type(error).__name__
            self.log_line(f"failed: {self.error}")
            end = FAILED
        self.state = end or (STOPPED if self.state == STOPPING else FINISHED)
        self._pending_end = None
        self.control = None
        self.version += 1
