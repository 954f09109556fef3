"""Typed events the trainer reports, and the commands it checks (between steps, and inside
the long phases before and between them).

The CLI prints events; the TUI turns them into Textual messages. Both only read these
dataclasses, never the trainer's internals.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union


@dataclass(frozen=True)
class StepEvent:
    step: int
    total: int
    loss: float
    lr: float
    images_per_s: float
    seconds: float
    gpu_mem_gib: float | None = None


@dataclass(frozen=True)
class SampleEvent:
    """Validation samples of one step were written (paths in prompt-major, seed-minor order)."""

    step: int
    paths: tuple[Path, ...]
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class CheckpointEvent:
    step: int
    path: Path


@dataclass(frozen=True)
class LogEvent:
    message: str
    level: str = "info"


@dataclass(frozen=True)
class FinishedEvent:
    step: int
    run_dir: Path
    stopped: bool = False  # True when a stop command or Ctrl-C ended the run early


@dataclass(frozen=True)
class FailedEvent:
    step: int
    message: str
    run_dir: Path | None = None


@dataclass(frozen=True)
class ValidationLossEvent:
    """The deterministic validation loss of the checkpoint just saved (training/validation_loss.py)."""

    step: int
    loss: float
    seconds: float
    measured_on: str = ""  # "training images at fixed noise", "2 held-out images", ...


@dataclass(frozen=True)
class ProgressEvent:
    """How far one long phase is (loading, class images, caching, sampling, validation loss,
    export), so a screen or a follower can say "class images 16/64 · ETA 2:31" instead of
    looking frozen. `done == total` ends the phase. Made by `sdstudio.core.progress.Progress`."""

    phase: str  # what, in a few words: "class images", "caching latents", ...
    done: int
    total: int
    unit: str = ""  # what done/total count ("images", "prompts", "batches"); "" for stages
    eta_seconds: float | None = None  # None until there is a rate to go by
    detail: str = ""  # the current stage, e.g. "adapters" while loading

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def line(self) -> str:
        """One line for a status bar or a log: what, k/N, ETA."""
        unit = f" {self.unit}" if self.unit else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.phase}{detail} {self.done}/{self.total}{unit} · ETA {format_duration(self.eta_seconds)}"

    def to_status(self) -> dict[str, object]:
        """The `phase` field of status.json (a follower reads it back with `from_status`)."""
        return {"phase": self.phase, "done": self.done, "total": self.total, "unit": self.unit,
                "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1), "detail": self.detail}

    @classmethod
    def from_status(cls, data: object) -> ProgressEvent | None:
        """Read back `to_status`; None for anything else (no phase, an older or broken file)."""
        if not isinstance(data, dict):
            return None
        try:
            eta = data.get("eta_seconds")
            return cls(str(data["phase"]), int(data["done"]), int(data["total"]), str(data.get("unit") or ""),
                       None if eta is None else float(eta), str(data.get("detail") or ""))
        except (KeyError, TypeError, ValueError):
            return None


def format_duration(seconds: float | None) -> str:
    """m:ss or h:mm:ss; "--:--" when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


Event = Union[StepEvent, SampleEvent, CheckpointEvent, LogEvent, FinishedEvent, FailedEvent, ValidationLossEvent,
              ProgressEvent]
EventCallback = Callable[[Event], None]


class StopRequested(BaseException):
    """Raised inside a phase (model loading, latent caching, class images, sampling) when a stop
    was requested; the trainer catches it, keeps a checkpoint if a step was taken since the last
    one, and marks the run stopped. A BaseException, like KeyboardInterrupt: a signal raises it
    wherever the main thread is, and an `except Exception` there (ours, or a library's) must not
    swallow the stop."""


@dataclass
class TrainerControl:
    """Stop, sample-now and save-now: the one seam through which anything (the Stop key, a
    signal handler, a command poller) steers a run. Safe to set from any thread or from a
    signal handler; the trainer looks at `stop` at least every ~2 s in every phase."""

    stop: threading.Event = field(default_factory=threading.Event)
    sample_now: threading.Event = field(default_factory=threading.Event)
    save_now: threading.Event = field(default_factory=threading.Event)
    abortable: threading.Event = field(default_factory=threading.Event)
    run_path: Path | None = None  # the run being trained, once its folder is chosen (the hang-up marks it)

    def request_stop(self) -> None:
        self.stop.set()

    def request_sample(self) -> None:
        self.sample_now.set()

    def request_save(self) -> None:
        self.save_now.set()

    @contextlib.contextmanager
    def abortable_phase(self) -> Iterator[None]:
        """A phase with nothing to save and no stop checks of its own (loading the models: one
        library call that takes seconds): a signal may end it at once, see `stop_from_signal`."""
        self.check()
        self.abortable.set()
        try:
            yield
        finally:
            self.abortable.clear()
        self.check()

    def stop_from_signal(self) -> None:
        """For a signal handler (it runs in the main thread): request a stop, and end an
        abortable phase right away by raising StopRequested where the main thread is."""
        self.stop.set()
        if self.abortable.is_set():
            self.abortable.clear()
            raise StopRequested()

    def check(self) -> None:
        """Raise StopRequested if a stop was requested (called inside long loops)."""
        if self.stop.is_set():
            raise StopRequested()
