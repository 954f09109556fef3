"""Follow a run another process is training, from its directory alone.

`RunFollower.poll()` turns what changed in the run folder since the last call into the same
typed events the trainer reports in-process (steps from metrics.jsonl, samples from the sample
index, checkpoints, log lines from logs/trainer.log, and the end from status.json), so the
studio draws a detached run exactly as it draws its own. A run whose trainer died without
ending its status is reported as failed with "crashed — resumable".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sdstudio.core.events import (CheckpointEvent, Event, FailedEvent, FinishedEvent, LogEvent, ProgressEvent,
                                  SampleEvent, StepEvent)
from sdstudio.core.runs.run_dir import FAILED, FINISHED, STOPPED, RunDir

LOG_TAIL_BYTES = 64 * 1024  # on attaching, only the end of a long log is replayed
SKIPPED_LOG_PREFIXES = ("step ", "samples at step ", "checkpoint: ")
SKIPPED_LOG_LINES = re.compile(r"(finished|stopped) at step \d+: ")  # the CLI's last line: an event too
CRASH_MESSAGE = "the trainer process is gone (crashed — resumable): resume it from its latest checkpoint"


class RunFollower:
    def __init__(self, run_dir: str | os.PathLike[str], since: float = 0.0) -> None:
        """`since`: the time a trainer was started for this run; older end states are its predecessor's."""
        self.run = RunDir(run_dir)
        self.since = since
        self._metrics_seen = 0
        self._sample_key: tuple[int, tuple[Path, ...]] | None = None
        self._sample_pending: tuple[int, tuple[Path, ...]] | None = None
        self._ckpt_steps: set[int] = set()
        self._log_offset: int | None = None
        self._log_rest = b""
        self._per_step: int | None | bool = False  # samples per validation round; False: not read yet
        self._phase: ProgressEvent | None = None  # the long phase status.json names, as last reported
        self.ended = False

    def _samples_per_step(self) -> int | None:
        """len(validation_prompts) x num_validation_images from run.toml (None when unknown)."""
        if self._per_step is False:
            try:
                cfg = self.run.config()
                prompts = cfg.get("validation_prompts")
                self._per_step = len(prompts) * int(cfg.get("num_validation_images", 1)) if prompts else None
            except (OSError, ValueError, TypeError):
                return None  # run.toml not written yet: ask again next time
        return self._per_step  # type: ignore[return-value]

    @property
    def log_file(self) -> Path:
        return self.run.path / "logs" / "trainer.log"

    @property
    def stopping(self) -> bool:
        """A stop was acknowledged and the trainer is finishing its step."""
        status = self.run.status()
        return status.get("state") == "running" and any(
            isinstance(a, dict) and a.get("command") == "stop" for a in status.get("commands") or [])

    def poll(self) -> list[Event]:
        if self.ended:
            return []
        status = self.run.status()  # read first: an end seen here comes after every row read below
        total = int(status.get("total") or 0)
        events: list[Event] = [*self._log_lines(), *self._steps(total), *self._checkpoints(), *self._samples(),
                               *self._progress(status)]
        end = self._end(status)
        if end is not None:
            events += [*self._log_lines(), *self._steps(total), *self._checkpoints(), *self._samples(final=True), end]
            self.ended = True
        return events

    def _steps(self, total: int) -> list[Event]:
        rows = self.run.metrics()
        new, self._metrics_seen = rows[self._metrics_seen:], len(rows)
        out: list[Event] = []
        for row in new:
            try:
                out.append(StepEvent(int(row["step"]), total, float(row["loss"]), float(row.get("lr", 0.0)),
                                     float(row.get("images_per_s", 0.0)), float(row.get("seconds", 0.0)),
                                     row.get("gpu_mem_gib")))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def _samples(self, final: bool = False) -> list[Event]:
        records = self.run.samples()
        if not records:
            return []
        newest = max(r.step for r in records)
        latest = sorted((r for r in records if r.step == newest), key=lambda r: (r.prompt_index, r.seed))
        key = (newest, tuple(r.path for r in latest))
        if key == self._sample_key:
            return []
        expected = self._samples_per_step()
        if not final:  # images of one step land one by one: report the set when it is complete
            if expected is not None and len(latest) < expected:  # (or, not knowing the count, once
                return []                                        # it has stopped growing)
            if expected is None and key != self._sample_pending:
                self._sample_pending = key
                return []
        self._sample_key = self._sample_pending = key
        return [SampleEvent(newest, key[1], tuple(r.prompt for r in latest))]

    def _progress(self, status: dict[str, object]) -> list[Event]:
        """The trainer's current long phase (status.json's `phase`); its end when the field goes."""
        phase = ProgressEvent.from_status(status.get("phase"))
        if phase == self._phase:
            return []
        ended = self._phase
        self._phase = phase
        if phase is None and ended is not None:
            return [ProgressEvent(ended.phase, ended.total, ended.total, ended.unit)]
        return [phase] if phase is not None else []

    def _checkpoints(self) -> list[Event]:
        out: list[Event] = []
        for ckpt in self.run.checkpoints():
            if ckpt.step not in self._ckpt_steps:
                self._ckpt_steps.add(ckpt.step)
                out.append(CheckpointEvent(ckpt.step, ckpt.path))
        return out

    def _log_lines(self) -> list[Event]:
        try:
            size = self.log_file.stat().st_size
        except OSError:
            return []
        if self._log_offset is None:
            self._log_offset = max(0, size - LOG_TAIL_BYTES)
        if size <= self._log_offset:
            return []
        with open(self.log_file, "rb") as fh:
            fh.seek(self._log_offset)
            data = self._log_rest + fh.read(size - self._log_offset)
        self._log_offset = size
        *lines, self._log_rest = data.split(b"\n")
        out: list[Event] = []
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            # steps, samples and checkpoints arrive as events (drawn, and logged by the session);
            # progress bars are noise in a log pane
            if line.strip() and not line.startswith(SKIPPED_LOG_PREFIXES) and not SKIPPED_LOG_LINES.match(line) \
                    and "\r" not in line and "it/s]" not in line:
                out.append(LogEvent(line.removeprefix("warning: "),
                                    "warning" if line.startswith("warning: ") else "info"))
        return out

    def _end(self, status: dict[str, object]) -> Event | None:
        from sdstudio.core.runs.overview import CRASHED, run_state

        if float(status.get("updated") or 0) < self.since:  # type: ignore[arg-type]
            return None  # still the previous trainer's status: ours has not started yet
        state = run_state(self.run, status)  # type: ignore[arg-type]
        step = int(status.get("step") or 0)  # type: ignore[call-overload]
        if state in (FINISHED, STOPPED):
            return FinishedEvent(step, self.run.path, stopped=state == STOPPED)
        if state == FAILED:
            return FailedEvent(step, str(status.get("error") or "training failed"), self.run.path)
        if state == CRASHED:
            return FailedEvent(step, CRASH_MESSAGE, self.run.path)
        return None
