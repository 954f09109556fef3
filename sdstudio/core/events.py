"""Typed events the trainer reports, and the commands it checks between steps.

The CLI prints events; the TUI turns them into Textual messages. Both only read these
dataclasses, never the trainer's internals.
"""

from __future__ import annotations

import threading
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


Event = Union[StepEvent, SampleEvent, CheckpointEvent, LogEvent, FinishedEvent, FailedEvent, ValidationLossEvent]
EventCallback = Callable[[Event], None]


@dataclass
class TrainerControl:
    """Flags the loop checks between optimizer steps; safe to set from any thread."""

    stop: threading.Event = field(default_factory=threading.Event)
    sample_now: threading.Event = field(default_factory=threading.Event)
    save_now: threading.Event = field(default_factory=threading.Event)

    def request_stop(self) -> None:
        self.stop.set()

    def request_sample(self) -> None:
        self.sample_now.set()

    def request_save(self) -> None:
        self.save_now.set()
