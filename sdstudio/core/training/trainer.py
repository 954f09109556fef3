"""The trainer: text-to-image LoRA, DreamBooth LoRA, DreamBooth LoRA with prior preservation.

`train()` is synchronous: the CLI calls it in the main thread, the studio in one worker
thread. It reports through `on_event` and checks `control` between optimizer steps.
Everything it leaves behind is in the run directory (see runs.py), so a run can be
inspected, resumed or exported by any other process.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sdstudio import __version__
from sdstudio.core.config import TrainConfig
from sdstudio.core.errors import ConfigError, SdstudioError, TrainingError
from sdstudio.core.events import (CheckpointEvent, Event, EventCallback, FailedEvent, FinishedEvent, LogEvent,
                                  SampleEvent, StepEvent, TrainerControl)
from sdstudio.core.models import BaseModel, load_pipeline, model_identity, resolve_base_model
from sdstudio.core.paths import runs_root
from sdstudio.core.runs import FAILED, FINISHED, RUNNING, STOPPED, RunDir
from sdstudio.core.training import state as train_state
from sdstudio.core.training import validation
from sdstudio.core.training.examples import Example, ExampleSource, class_examples, instance_examples
from sdstudio.core.training.loss import StepLoss

OOM_HINT = ("out of memory: lower train_batch_size or resolution, set gradient_checkpointing = true, "
            "or set train_text_encoder = false")


def default_run_name(cfg: TrainConfig, stem: str | None = None) -> str:
    return f"{stem or cfg.resolved_method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _check_device_options(cfg: TrainConfig) -> None:
    import torch

    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision", "fp16 needs a CUDA GPU; use \"bf16\" or \"no\" on this machine")


class Trainer(StepLoss):
    """One training run; `run()` drives it to the end, a stop, or a failure."""

    def __init__(self, cfg: TrainConfig, on_event: EventCallback | None, control: TrainerControl | None,
                 resume: str | Path | None) -> None:
        self.cfg = cfg
        self._on_event = on_event
        self.control = control or TrainerControl()
        self.resume = Path(resume) if resume else None
        self.step = 0
        self.run_dir: RunDir | None = None
        self._last_status = 0.0

    # events
    def emit(self, event: Event) -> None:
        if self._on_event is not None and self.is_main:
            self._on_event(event)

    def log(self, message: str, level: str = "info") -> None:
        self.emit(LogEvent(message, level))

    # setup
    def _prepare(self) -> None:
        import torch
        from accelerate import Accelerator, PartialState
        from accelerate.utils import ProjectConfiguration, broadcast_object_list

        cfg = self.cfg
        _check_device_options(cfg)
        self.base: BaseModel = resolve_base_model(cfg.pretrained_model_name_or_path)
        self.examples, skipped = instance_examples(cfg)  # refuses an unusable dataset before loading models
        state = PartialState()  # the process group, before the Accelerator: it needs the run's folder
        self.is_main = state.is_main_process
        names = [self._choose_run_path() if self.is_main else None]
        broadcast_object_list(names)
        self.run_dir = RunDir(names[0])
        project = ProjectConfiguration(project_dir=str(self.run_dir.path), logging_dir=str(self.run_dir.path / "logs"))
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, project_config=project,
                                       log_with=None if cfg.report_to == "none" else cfg.report_to)
        self.device = self.accelerator.device
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
        if self.is_main:
            if not self.resume:
                self.run_dir.write_config(cfg.to_dict(), {"version": __version__, "base_model": model_identity(self.base),
                                                          "dataset_images": len(self.examples), "skipped": skipped})
            self.run_dir.write_status(RUNNING, self.step, cfg.max_train_steps)
        for line in skipped:
            self.log(line, "warning")
        self.log(f"{len(self.examples)} training images; loading {self.base.name}")

    def _choose_run_path(self) -> str:
        cfg = self.cfg
        if self.resume:
            return str(self.resume)
        path = Path(cfg.output_dir) if cfg.output_dir else runs_root() / (cfg.run_name or default_run_name(cfg))
        if RunDir(path).exists() and RunDir(path).checkpoints():
            raise ConfigError("output_dir", f"{path} already holds a run with checkpoints; resume it with "
                              f"`sdstudio train --resume {path}` or choose another output_dir")
        return str(path)

    def _load_models(self) -> None:
        import torch
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        cfg, acc = self.cfg, self.accelerator
        self.pipe = load_pipeline(self.base, vae=cfg.pretrained_vae_model_name_or_path)
        self.noise_scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        unet, vae, text_encoder = self.pipe.unet, self.pipe.vae, self.pipe.text_encoder
        text_encoder_2 = self.text_encoder_2 = getattr(self.pipe, "text_encoder_2", None)  # [sdxl hook] or None
        for module in (unet, vae, text_encoder, text_encoder_2):
            if module is not None:
                module.requires_grad_(False)
        if cfg.with_prior_preservation:
            from sdstudio.core.training.class_images import ensure_class_images

            if self.is_main:
                self.pipe.to(self.device)
                ensure_class_images(cfg, self.pipe, self.log)
            acc.wait_for_everyone()
            self.class_examples: list[Example] = class_examples(cfg)
        vae.to(self.device)  # the VAE stays fp32: fp16 SD VAEs overflow (SDXL's too; see sdxl.py)
        for module in (text_encoder, unet) + ((text_encoder_2,) if text_encoder_2 is not None else ()):
            module.to(self.device)
            if self.weight_dtype != torch.float32:
                module.to(dtype=self.weight_dtype)
        torch.manual_seed(cfg.seed)  # LoRA init is part of the run's determinism
        unet.add_adapter(train_state.lora_config(cfg.rank, cfg.effective_alpha, train_state.UNET_TARGETS))
        params = [p for p in unet.parameters() if p.requires_grad]
        if cfg.train_text_encoder:
            text_encoder.add_adapter(train_state.lora_config(cfg.rank, cfg.effective_alpha, train_state.TEXT_ENCODER_TARGETS))
            params += [p for p in text_encoder.parameters() if p.requires_grad]
            if text_encoder_2 is not None:  # [sdxl hook] both encoders get a LoRA, as in the diffusers SDXL script
                text_encoder_2.add_adapter(train_state.lora_config(cfg.rank, cfg.effective_alpha,
                                                                   train_state.TEXT_ENCODER_TARGETS))
                params += [p for p in text_encoder_2.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()  # LoRA weights train in fp32 whatever the base dtype
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            if cfg.train_text_encoder:
                for te in [m for m in (text_encoder, text_encoder_2) if m is not None]:
                    te.gradient_checkpointing_enable()
        cuda_fast = cfg.fast_path and self.device.type == "cuda"
        self.channels_last = cuda_fast
        if cuda_fast:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            unet.to(memory_format=torch.channels_last)
        # bf16 weights need no autocast (LoRA layers compute in fp32 and cast back); fp16 does.
        self.use_autocast = self.weight_dtype == torch.float16 or (self.weight_dtype == torch.bfloat16 and not cfg.fast_path)
        self.fold_micro_batches = cfg.fast_path and cfg.gradient_accumulation_steps > 1
        lr = cfg.learning_rate * (cfg.images_per_step * acc.num_processes if cfg.scale_lr else 1)
        optimizer = self._optimizer(params, lr, fused=cuda_fast)
        self.lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer=optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                                          num_training_steps=cfg.max_train_steps)
        if cfg.train_text_encoder and text_encoder_2 is not None:
            self.unet, self.text_encoder, self.text_encoder_2, self.optimizer = acc.prepare(
                unet, text_encoder, text_encoder_2, optimizer)
        elif cfg.train_text_encoder:
            self.unet, self.text_encoder, self.optimizer = acc.prepare(unet, text_encoder, optimizer)
        else:
            self.unet, self.optimizer = acc.prepare(unet, optimizer)
            self.text_encoder = text_encoder
        self.params = params
        everything = self.examples + getattr(self, "class_examples", [])
        fixed = all(ex.fixed_crop for ex in everything)
        if text_encoder_2 is not None:  # [sdxl hook] two encoders, pooled text, size/crop time ids
            from sdstudio.core.training.sdxl import SdxlSource

            self.source = SdxlSource(cfg, vae, (self.text_encoder, self.text_encoder_2),
                                     (self.pipe.tokenizer, self.pipe.tokenizer_2), self.device, self.weight_dtype, fixed)
        else:
            self.source = ExampleSource(cfg, vae, text_encoder, self.pipe.tokenizer, self.device, self.weight_dtype, fixed)
        self.source.precompute(everything)
        self.offloaded = cuda_fast and self.source.frozen_modules_idle
        self.frozen = [m for m in (vae, text_encoder, text_encoder_2) if m is not None]
        if self.offloaded:  # their outputs cached: free their GPU memory until sampling
            for module in self.frozen:
                module.to("cpu")
            torch.cuda.empty_cache()
        if cfg.torch_compile:
            self.unet = torch.compile(self.unet)
        if cfg.report_to != "none":
            acc.init_trackers("sdstudio", config={k: v for k, v in cfg.to_dict().items() if isinstance(v, (int, float, str, bool))})

    def _optimizer(self, params: list[Any], lr: float, fused: bool) -> Any:
        import torch

        cfg = self.cfg
        kwargs = dict(lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.adam_weight_decay, eps=cfg.adam_epsilon)
        if cfg.use_8bit_adam:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, **kwargs)
        return torch.optim.AdamW(params, fused=fused or None, **kwargs)

    def _resume(self) -> None:
        assert self.run_dir is not None
        ckpt = self.run_dir.latest_checkpoint()
        if ckpt is None or not train_state.has_resume_state(ckpt.path):
            self.log("no checkpoint to resume from; starting at step 0")
            self.step = 0
        else:
            unwrap = self.accelerator.unwrap_model
            te = unwrap(self.text_encoder) if self.cfg.train_text_encoder else None
            te2 = unwrap(self.text_encoder_2) if te is not None and self.text_encoder_2 is not None else None
            state = train_state.load_checkpoint(ckpt, unwrap(self.unet), te, self.optimizer, self.lr_scheduler,
                                                text_encoder_2=te2)
            self.step = int(state["step"])
            self.log(f"resumed from {ckpt.path} at step {self.step}")
        if self.is_main:
            self.run_dir.truncate_after(self.step)

    # one optimizer step
    def _optimizer_step(self) -> float:
        import torch

        cfg, acc = self.cfg, self.accelerator
        accum = cfg.gradient_accumulation_steps
        first = self.step * accum
        if self.fold_micro_batches:
            loss = self._loss(list(range(first, first + accum)))
            acc.backward(loss)
            total = loss.detach().float()
        else:
            total = torch.zeros((), device=self.device)
            for a in range(accum):
                last = a == accum - 1
                with contextlib.nullcontext() if last else acc.no_sync(self.unet):
                    loss = self._loss([first + a])
                    acc.backward(loss / accum)
                total += loss.detach().float() / accum
        mean_loss = float(acc.reduce(total, reduction="mean")) if acc.num_processes > 1 else float(total)
        if not math.isfinite(mean_loss):
            last_good = self.run_dir.latest_checkpoint() if self.run_dir else None
            keep = f"the last good checkpoint is {last_good.path}" if last_good else "no checkpoint was saved yet"
            raise TrainingError(f"loss became {mean_loss} at step {self.step + 1}; {keep}. Lower learning_rate, "
                                "or use mixed_precision = \"bf16\" or \"no\"")
        acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return mean_loss

    # outputs
    def save(self) -> None:
        assert self.run_dir is not None
        self.accelerator.wait_for_everyone()
        if self.is_main:
            unwrap = self.accelerator.unwrap_model
            te = unwrap(self.text_encoder) if self.cfg.train_text_encoder else None
            te2 = unwrap(self.text_encoder_2) if te is not None and self.text_encoder_2 is not None else None
            rec = train_state.save_checkpoint(self.run_dir, self.step, unwrap(self.unet), te, self.optimizer,
                                              self.lr_scheduler, {"micro_batches": self.step * self.cfg.gradient_accumulation_steps},
                                              text_encoder_2=te2)
            removed = self.run_dir.prune_checkpoints(self.cfg.checkpoints_total_limit)
            self.emit(CheckpointEvent(self.step, rec.path))
            self.log(f"saved checkpoint {rec.path.name}" + (f" (removed step {removed})" if removed else ""))
        self.accelerator.wait_for_everyone()

    def sample(self) -> None:
        assert self.run_dir is not None
        if self.is_main:
            unwrap = self.accelerator.unwrap_model
            te2 = unwrap(self.text_encoder_2) if self.text_encoder_2 is not None else None  # [sdxl hook]
            pipe = validation.make_pipeline(self.pipe, unwrap(self.unet), unwrap(self.text_encoder), self.pipe.vae, te2)
            prompts = validation.validation_prompts(self.cfg, [ex.caption for ex in self.examples])
            autocast = None if self.weight_dtype == self._fp32 else self.weight_dtype
            for module in self.frozen if self.offloaded else ():
                module.to(self.device)
            try:
                paths = validation.sample(pipe, self.run_dir, self.step, self.cfg, prompts, self.device, autocast)
            finally:
                for module in self.frozen if self.offloaded else ():
                    module.to("cpu")
            self.emit(SampleEvent(self.step, tuple(paths), tuple(prompts)))
        self.accelerator.wait_for_everyone()

    def _status(self, state: str, error: str | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if self.is_main and self.run_dir is not None and (force or now - self._last_status > 1.0):
            self.run_dir.write_status(state, self.step, self.cfg.max_train_steps, error)
            self._last_status = now

    # the loop
    def run(self) -> RunDir:
        import torch

        self.is_main = True
        self._fp32 = torch.float32
        try:
            self._prepare()
            self._load_models()
            if self.resume:
                self._resume()
            self._loop()
        except KeyboardInterrupt:
            self._stop_cleanly()
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then re-raised
            self._fail(exc)
            raise
        return self.run_dir  # type: ignore[return-value]

    def _loop(self) -> None:
        import torch

        cfg, ctl = self.cfg, self.control
        assert self.run_dir is not None
        if self.step == 0:
            self.sample()
        saved_at, sampled_at = -1, 0 if self.step == 0 else -1
        while self.step < cfg.max_train_steps:
            if ctl.stop.is_set():
                self._stop_cleanly()
                return
            t0 = time.perf_counter()
            loss = self._optimizer_step()
            seconds = time.perf_counter() - t0
            lr = float(self.lr_scheduler.get_last_lr()[0])
            ips = cfg.images_per_step * self.accelerator.num_processes / max(seconds, 1e-9)
            mem = torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else None
            if self.is_main and (self.step % cfg.logging_steps == 0 or self.step == cfg.max_train_steps):
                row = {"step": self.step, "loss": loss, "lr": lr, "seconds": seconds, "images_per_s": ips, "time": time.time()}
                if mem is not None:
                    row["gpu_mem_gib"] = mem
                self.run_dir.append_metrics(row)
                if cfg.report_to != "none":
                    self.accelerator.log({"loss": loss, "lr": lr}, step=self.step)
            self.emit(StepEvent(self.step, cfg.max_train_steps, loss, lr, ips, seconds, mem))
            self._status(RUNNING)
            if self.step % cfg.checkpointing_steps == 0 or ctl.save_now.is_set() or self.step == cfg.max_train_steps:
                ctl.save_now.clear()
                self.save()
                saved_at = self.step
            if self.step % cfg.validation_steps == 0 or ctl.sample_now.is_set() or self.step == cfg.max_train_steps:
                ctl.sample_now.clear()
                self.sample()
                sampled_at = self.step
        if saved_at != self.step:
            self.save()
        if sampled_at != self.step:
            self.sample()
        self._status(FINISHED, force=True)
        if cfg.report_to != "none":
            self.accelerator.end_training()
        self.emit(FinishedEvent(self.step, self.run_dir.path))

    def _stop_cleanly(self) -> None:
        """Ctrl-C or a stop command: keep the work done so far as a checkpoint."""
        if self.run_dir is None or not hasattr(self, "optimizer"):
            return
        latest = self.run_dir.latest_checkpoint()
        if self.step > 0 and (latest is None or latest.step != self.step):
            self.save()
        self._status(STOPPED, force=True)
        self.log(f"stopped at step {self.step}; resume with `sdstudio train --resume {self.run_dir.path}`")
        self.emit(FinishedEvent(self.step, self.run_dir.path, stopped=True))

    def _fail(self, exc: BaseException) -> None:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            message = f"{OOM_HINT} (step {self.step}, train_batch_size={self.cfg.train_batch_size}, resolution={self.cfg.resolution})"
        elif isinstance(exc, SdstudioError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
        self._status(FAILED, error=message, force=True)
        self.emit(FailedEvent(self.step, message, self.run_dir.path if self.run_dir else None))


def train(cfg: TrainConfig, on_event: EventCallback | None = None, control: TrainerControl | None = None,
          resume: str | Path | None = None) -> RunDir:
    """Run a training to its end (or a stop); returns the run directory.

    Failures are reported as a FailedEvent and in status.json, then re-raised; the caller
    (CLI or studio) decides how to show them.
    """
    return Trainer(cfg, on_event, control, resume).run()


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config a run was started with (from its run.toml), with optional overrides."""
    from sdstudio.core.config import load_config

    run = RunDir(run_dir)
    if not run.exists():
        raise SdstudioError(f"{run_dir}: not a run directory (no run.toml)")
    return load_config(run.run_toml, overrides)
