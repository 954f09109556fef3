"""The trainer: text-to-image LoRA, DreamBooth LoRA, DreamBooth LoRA with prior preservation.

`train()` is synchronous: the CLI calls it in the main thread, the studio in one worker
thread. It reports through `on_event` and obeys `control` (stop, sample now, save now):
between optimizer steps, and inside the long phases (model loading, latent caching, class
images, sampling) at least every ~2 s. Everything it leaves behind is in the run directory
(see core/runs/run_dir.py), so a run can be inspected, resumed or exported by any other process.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from sdstudio import __version__
from sdstudio.core.config import TrainConfig
from sdstudio.core.errors import SdstudioError
from sdstudio.core.events import (CheckpointEvent, Event, EventCallback, FailedEvent, FinishedEvent, LogEvent,
                                  SampleEvent, StepEvent, StopRequested, TrainerControl)
from sdstudio.core.models import BaseModel, model_identity, resolve_base_model
from sdstudio.core.runs.run_dir import FAILED, FINISHED, RUNNING, RunDir
from sdstudio.core.training import (budget, checkpoint, memory_watch, opening, optimizer_step, precision, resume_guard,
                                    retention, stopping, validation)
from sdstudio.core.training.examples import Example, instance_examples, subject_lines
from sdstudio.core.training.setup import TrainingModels
from sdstudio.core.training.checkpoint_review import CheckpointReview

class Trainer:
    """One training run; `run()` drives it to the end, a stop, or a failure.

    Setup is a sequence of named steps (open the run, load, adapters, optimizer and scheduler,
    prepare, caches, compile); every attribute they fill is declared here first.
    """

    def __init__(self, cfg: TrainConfig, on_event: EventCallback | None, control: TrainerControl | None,
                 resume: str | Path | None, force: bool = False) -> None:
        self.cfg = cfg
        self._on_event = on_event
        self.control = control or TrainerControl()
        self.resume = Path(resume) if resume else None
        self.force = force  # resume although the dataset or base model changed (recorded)
        self.counters = checkpoint.TrainerCounters()  # saved and restored by Accelerate
        self.is_main = True  # until the process group says otherwise
        self.run_dir: RunDir | None = None
        self._last_status = 0.0
        self._updating = False  # between optimizer.step() and the step counter: nothing to save
        self._stopping = False  # the stop's checkpoint is being written: a second signal must not restart it
        self._in_step = False  # in a step's forward/backward: a stop may end it (weights not touched yet)
        self._pending_at_start: dict[str, list[int]] = {}  # optional work an earlier stop left (pending.json)
        self.clock = budget.RunClock()  # wall time of the steps and of sampling (optional work)
        self.sampling = validation.sampling_on(cfg)
        # filled by _open_run
        self.base: BaseModel | None = None
        self.examples: list[Example] = []
        self.precision: precision.Precision | None = None
        self.accelerator: Any = None
        self.device: Any = None
        self.weight_dtype: Any = None
        self.models: TrainingModels | None = None  # built by _setup_models
        self.folding = precision.Folding(cfg)
        self._lora_probe: precision.LoraDtypeProbe | None = None
        self.review = CheckpointReview(cfg, self.log, self.emit)  # validation loss and scores per checkpoint
        self.memory: memory_watch.MemoryWatch | None = None  # the memory estimate and measured peaks

    @property
    def step(self) -> int:
        return self.counters.step

    @step.setter
    def step(self, value: int) -> None:
        self.counters.step = value

    # events
    def emit(self, event: Event) -> None:
        if self._on_event is not None and self.is_main:
            self._on_event(event)

    def log(self, message: str, level: str = "info") -> None:
        self.emit(LogEvent(message, level))

    @property
    def _single_process(self) -> bool:
        return self.accelerator is None or self.accelerator.num_processes == 1

    def _check(self) -> None:
        """Stop inside a phase. With several processes only between steps, where they agree."""
        if self._single_process:
            self.control.check()

    # setup: open the run directory
    def _open_run(self) -> None:
        from accelerate import Accelerator, PartialState
        from accelerate.state import AcceleratorState
        from accelerate.utils import ProjectConfiguration, broadcast_object_list

        cfg = self.cfg
        self.base = resolve_base_model(cfg.pretrained_model_name_or_path)
        self.examples, skipped = instance_examples(cfg)  # refuses an unusable dataset before loading models
        self.examples = self.review.hold_out(self.examples)  # the validation loss's images
        cpu = opening.cpu_process_group()
        state = PartialState(cpu=cpu)  # the process group, before the Accelerator: it needs the run's folder
        self.is_main = state.is_main_process
        names = [opening.choose_run_path(cfg, self.resume) if self.is_main else None]
        broadcast_object_list(names)
        run_dir = RunDir(names[0])
        dataset = resume_guard.dataset_record(self.examples, opening.data_root(cfg))
        identity = model_identity(self.base)
        # a refused resume leaves the run as it was (its status included)
        forced = resume_guard.check(run_dir.path, run_dir.meta(), dataset, identity, self.force) if self.resume else []
        self.run_dir = run_dir
        self.control.run_path = run_dir.path if self.is_main else None
        self._pending_at_start = run_dir.pending() if self.resume else {}  # read by every rank before any writes
        self.precision = precision.plan(cfg.mixed_precision, cfg.fast_path, cfg.full, cfg.master_weights)
        AcceleratorState._reset_state()  # each run sets its own precision (the studio runs several in one process)
        project = ProjectConfiguration(project_dir=str(self.run_dir.path), logging_dir=str(self.run_dir.path / "logs"))
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=self.precision.accelerate_mixed_precision,
                                       project_config=project, log_with=None if cfg.report_to == "none" else cfg.report_to)
        precision.attach_cpu_scaler(self.accelerator)
        self.device = self.accelerator.device
        self.weight_dtype = self.precision.weight_dtype
        if self.is_main:
            meta = {"version": __version__, "base_model": identity, "dataset_images": len(self.examples),
                    "skipped": skipped, "dataset": dataset}
            opening.record_run(self.run_dir, cfg, meta, bool(self.resume), forced)
            self.run_dir.write_status(RUNNING, self.step, cfg.max_train_steps)
        for line in skipped:
            self.log(line, "warning")
        for change in forced:
            self.log(f"resuming with --force although {change}", "warning")
        self.log(f"{len(self.examples)} training images; loading {self.base.name}")
        for line in subject_lines(cfg, self.examples):  # crop boxes and masks: whether they are used
            self.log(line)

    def _setup_models(self) -> None:
        assert self.base is not None
        self.memory = memory_watch.start(self.cfg, self.base, self.device.type, len(self.examples), self.log, self.run_dir)
        self.models = TrainingModels(self.cfg, self.accelerator, self.weight_dtype, self.base, self.examples,
                                     self.counters, self.log, self._check)
        self.models.build()
        if self.models.full:
            self.log(self.models.full.describe(retention.limit(self.cfg)))
        if self.is_main:
            opening.record_prediction_type(self.run_dir, self.models.noise_scheduler.config.prediction_type,
                                           bool(self.resume), self.force)
        message = self.folding.start(self.device.type)
        if message:
            self.log(message)
        cfg = self.cfg
        if cfg.report_to != "none":
            self.accelerator.init_trackers(
                "sdstudio", config={k: v for k, v in cfg.to_dict().items() if isinstance(v, (int, float, str, bool))})
        self.review.prepare(self.models, self.is_main)

    def _resume(self) -> None:
        """Accelerate's load_state: adapters (via the hook), optimizer, GradScaler, RNG, LR
        scheduler and the step counter."""
        assert self.run_dir is not None
        if self.is_main:
            self.run_dir.recover_checkpoints()
        self.accelerator.wait_for_everyone()
        ckpt = self.run_dir.latest_checkpoint()
        if ckpt is None:
            self.log("no checkpoint to resume from; starting at step 0")
            self.step = 0
        elif not checkpoint.has_resume_state(ckpt, self.cfg.full):
            raise SdstudioError(f"{ckpt.path}: holds no training state this sdstudio can resume (an older checkpoint "
                                "format); export it, or start a new run")
        else:
            checkpoint.check_plain_data(ckpt.state_dir)
            self.accelerator.load_state(str(ckpt.state_dir))
            self.log(f"resumed from {ckpt.path} at step {self.step}")
        if self.is_main:
            self.run_dir.truncate_after(self.step)

    def _optimizer_step(self) -> float:
        return optimizer_step.take_step(self)

    def _commands(self) -> tuple[bool, bool, bool]:
        """(stop, save, sample) requests; with several processes, a request on any one counts for all."""
        import torch

        ctl = self.control
        flags = [ctl.stop.is_set(), ctl.save_now.is_set(), ctl.sample_now.is_set()]
        if not self._single_process:
            t = torch.tensor([float(f) for f in flags], device=self.device)
            flags = [bool(v > 0) for v in self.accelerator.reduce(t, reduction="sum").tolist()]
        return flags[0], flags[1], flags[2]

    # outputs
    def save(self, review: bool = True) -> None:
        """A checkpoint: the LoRA file, and Accelerate's state saved by every process into the
        staging folder, swapped in by the main process; then (unless a stop is under way, or
        `review` is False) its validation loss."""
        assert self.run_dir is not None
        acc = self.accelerator
        acc.wait_for_everyone()
        if self.is_main:
            checkpoint.begin(self.run_dir, self.step)
        acc.wait_for_everyone()
        staging = checkpoint.staging_path(self.run_dir, self.step)
        trained = self.models.plain()
        if not self._single_process:
            self.log(checkpoint.check_ranks_agree(trained, self.step, self.cfg.full))
        if self.is_main:
            if self.models.full:
                self.models.full.write(staging)
            else:
                checkpoint.write_lora_weights(staging, trained)
        acc.save_state(str(staging / "state"))
        acc.wait_for_everyone()
        if self.is_main:
            rec = checkpoint.commit(self.run_dir, self.step)
            removed = self.run_dir.prune_checkpoints(retention.limit(self.cfg), keep=retention.protected(self.run_dir))
            self.emit(CheckpointEvent(self.step, rec.path))
            self.log(f"saved checkpoint {rec.path.name}" + (f" (removed step {removed})" if removed else ""))
            if review and not self.control.stop.is_set():
                with self.models.evaluated():
                    self.review.after_save(self.step, self.models, self.run_dir, acc, self.clock.train_s,
                                           self.control.stop.is_set)
            elif review:  # a stop came meanwhile
                self.review.defer(self.step, self.run_dir, self.sampling)
        acc.wait_for_everyone()

    def sample(self) -> None:
        import torch

        assert self.run_dir is not None and self.models is not None
        t0 = time.perf_counter()
        if self.is_main:
            prompts = validation.validation_prompts(self.cfg, [ex.caption for ex in self.examples])
            self.log(f"sampling {len(prompts)} prompts x {self.cfg.num_validation_images} seeds at step {self.step}")
            autocast = None if self.weight_dtype == torch.float32 else self.weight_dtype
            with self.models.evaluated(), self.models.sampling_pipeline() as pipe:
                paths = validation.sample(pipe, self.run_dir, self.step, self.cfg, prompts, self.device, autocast,
                                          self._check)
            self.emit(SampleEvent(self.step, tuple(paths), tuple(prompts)))
            self.review.after_samples(self.step, self.run_dir)  # optional image scores, in the background
            self.run_dir.set_pending("samples", self.step, waiting=False)
        self.accelerator.wait_for_everyone()
        self.clock.sampling_s += time.perf_counter() - t0

    def _status(self, state: str, error: str | None = None, force: bool = False, **extra: Any) -> None:
        now = time.monotonic()
        if self.is_main and self.run_dir is not None and self.run_dir.exists() and (force or now - self._last_status > 1.0):
            self.run_dir.write_status(state, self.step, self.cfg.max_train_steps, error, **extra)
            self._last_status = now

    def _end_status(self, state: str) -> None:
        """The end state with the run's optional-work share (status.json `timing`, and the log)."""
        timing = self.clock.timing(self.review.val_seconds, self.review.scores_seconds)
        self._status(state, force=True, timing=timing)
        self.log(budget.timing_line(timing))
        memory_watch.finish(self.memory, self.log, self.run_dir if self.is_main else None)

    # the loop
    def run(self) -> RunDir:
        try:
            self._run()
        except KeyboardInterrupt:
            if self._stopping or self.control.stop.is_set():
                stopping.stop_at_once(self)  # a second signal: never start the save again
            else:
                stopping.stop_cleanly(self)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then re-raised
            self._fail(exc)
            raise
        return self.run_dir  # type: ignore[return-value]

    def _run(self) -> None:
        try:
            self._open_run()
            # Loading is a few long library calls with no step to lose: a signal ends it at once
            # (one process only: another rank would wait at the next barrier).
            with self.control.abortable_phase() if self._single_process else contextlib.nullcontext():
                self._setup_models()
                if self.resume:
                    self._resume()
            if self.resume and self.is_main:  # what a stop left for later: this checkpoint's validation loss
                with self.models.evaluated():
                    self.review.measure_pending(self.step, self.models, self.run_dir, self.accelerator)
            self._loop()
        except StopRequested:
            stopping.stop_cleanly(self)

    def _loop(self) -> None:
        cfg = self.cfg
        assert self.run_dir is not None
        saved_at, sampled_at = -1, -1
        if self.sampling and (self.step == 0 or self.step in self._pending_at_start.get("samples", [])):
            self.sample()  # the base model's samples, or those a stop left for later
            sampled_at = self.step
        if self._commands()[0]:
            stopping.stop_cleanly(self)
            return
        self._lora_probe = precision.LoraDtypeProbe(self.models.plain()["unet"])  # armed after sampling: a step's forward
        if self._single_process and not cfg.torch_compile:  # a stop ends the step in flight (stopping.py)
            stopping.abortable_steps(self.models.plain()["unet"], lambda: self._in_step and self.control.stop.is_set())
        while self.step < cfg.max_train_steps:
            t0 = time.perf_counter()
            loss = self._optimizer_step()
            seconds = time.perf_counter() - t0
            self.clock.train_s += seconds
            lr = float(self.models.lr_scheduler.get_last_lr()[0])
            ips = cfg.images_per_step * self.accelerator.num_processes / max(seconds, 1e-9)
            peaks = memory_watch.peaks(self.device.type)  # host_peak_gib (+ gpu_mem_gib, gpu_reserved_gib on CUDA)
            mem = peaks.get("gpu_mem_gib")
            if self.is_main and (self.step % cfg.logging_steps == 0 or self.step == cfg.max_train_steps):
                row = {"step": self.step, "loss": loss, "lr": lr, "seconds": seconds, "images_per_s": ips, "time": time.time()}
                row.update(peaks)
                self.run_dir.append_metrics(row)
                if cfg.report_to != "none":
                    self.accelerator.log({"loss": loss, "lr": lr}, step=self.step)
            self.emit(StepEvent(self.step, cfg.max_train_steps, loss, lr, ips, seconds, mem))
            self._status(RUNNING)
            stop, save_now, sample_now = self._commands()
            if stop:  # before anything optional: checkpoint, status, then leave
                stopping.stop_cleanly(self)
                return
            if self.step % cfg.checkpointing_steps == 0 or save_now or self.step == cfg.max_train_steps:
                self.control.save_now.clear()
                self.save()
                saved_at = self.step
            scheduled = self.sampling and (self.step % cfg.validation_steps == 0 or self.step == cfg.max_train_steps)
            if scheduled or (sample_now and cfg.num_validation_images > 0):
                self.control.sample_now.clear()
                self.sample()
                sampled_at = self.step
        if saved_at != self.step:
            self.save()
        if self.sampling and sampled_at != self.step:
            self.sample()
        self.review.close()  # waits for the background scoring of the last samples
        self._end_status(FINISHED)
        if cfg.report_to != "none":
            self.accelerator.end_training()
        self.emit(FinishedEvent(self.step, self.run_dir.path))

    def _fail(self, exc: BaseException) -> None:
        message = stopping.failure_message(exc, self.cfg, self.step, self.folding.fold)
        self._status(FAILED, error=message, force=True)
        self.emit(FailedEvent(self.step, message, self.run_dir.path if self.run_dir else None))


def train(cfg: TrainConfig, on_event: EventCallback | None = None, control: TrainerControl | None = None,
          resume: str | Path | None = None, force: bool = False) -> RunDir:
    """Run a training to its end (or a stop); returns the run directory.

    Failures are reported as a FailedEvent and in status.json, then re-raised; the caller
    (CLI or studio) decides how to show them.
    """
    from sdstudio.core.progress import StatusPhase, reporting_to

    trainer = Trainer(cfg, on_event, control, resume, force)  # its phases report progress (core/progress.py)
    with reporting_to(StatusPhase(trainer.emit, lambda: trainer.run_dir if trainer.is_main else None)):
        return trainer.run()
