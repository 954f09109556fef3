"""Progress of the long phases (loading, class images, caching, sampling, validation loss,
export), reported without threading a callback through every function on the way.

A phase function makes a `Progress` and calls `update()`; whoever runs it (the trainer, a
studio worker) has attached a sink for its thread with `reporting_to()`; with none attached
`update()` costs a comparison. A context variable rather than a parameter, because the phases
sit several calls below their runner (trainer -> setup -> ensure_class_images) and those
signatures belong to other modules; it is per thread, so the studio's worker and the UI
thread do not see each other's sink.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from typing import Any

from sdstudio.core.events import ProgressEvent

ProgressSink = Callable[[ProgressEvent], None]
_SINK: contextvars.ContextVar[ProgressSink | None] = contextvars.ContextVar("sdstudio_progress", default=None)
MIN_INTERVAL = 0.5  # seconds between two events of one phase (the first and the last always go)


@contextlib.contextmanager
def reporting_to(sink: ProgressSink | None) -> Iterator[None]:
    """Send the progress of phases run inside this block (in this thread) to `sink`."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


class Progress:
    """One phase: `update(done)` as it goes, `update(total)` (or `finish()`) at its end.

    The ETA comes from the rate so far; `fraction` lets a phase with coarse units (a batch of 16
    class images) report finer work (denoising steps) for a steadier estimate."""

    def __init__(self, phase: str, total: int, unit: str = "") -> None:
        self.phase, self.total, self.unit = phase, max(0, int(total)), unit
        self.sink = _SINK.get()
        self.started = time.monotonic()
        self._last = 0.0
        self._detail = ""
        if self.sink is not None and self.total:
            self._send(0, None, "")

    def update(self, done: int, fraction: float | None = None, detail: str = "") -> None:
        if self.sink is None or not self.total:
            return
        now = time.monotonic()
        if done < self.total and now - self._last < MIN_INTERVAL and detail == self._detail:
            return
        share = fraction if fraction is not None else done / self.total
        elapsed = now - self.started
        eta = elapsed * (1 - share) / share if share > 0 and elapsed > 0 else None
        self._send(min(done, self.total), eta, detail)

    def finish(self) -> None:
        self.update(self.total)

    def _send(self, done: int, eta: float | None, detail: str) -> None:
        self._last, self._detail = time.monotonic(), detail
        self.sink(ProgressEvent(self.phase, done, self.total, self.unit, eta, detail))  # type: ignore[misc]


class StatusPhase:
    """A sink that passes events on and writes the current phase into status.json's `phase`
    field (at most every `interval` seconds, and at each phase's start and end), so a studio
    following a detached run from its files shows it too (runs/follow.py reads it back)."""

    def __init__(self, emit: Callable[[Any], None], status: Callable[[], Any], interval: float = 2.0) -> None:
        self.emit = emit
        self.status = status  # -> an object with update_status(**fields) (a RunDir), or None
        self.interval = interval
        self._last = 0.0
        self._phase: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        self._write(event)  # first: whoever hears the event finds status.json saying it too
        self.emit(event)

    def _write(self, event: ProgressEvent) -> None:
        target = self.status()
        now = time.monotonic()
        edge = event.phase != self._phase or event.finished or event.done == 0
        if target is None or not (edge or now - self._last >= self.interval):
            return
        self._phase = None if event.finished else event.phase
        self._last = now
        with contextlib.suppress(OSError):
            target.update_status(phase=None if event.finished else event.to_status())
