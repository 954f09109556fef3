"""How a run ends early: what a stop writes, in which order, and what a failure reports.

A stop (the Stop key, `sdstudio stop`, SIGINT/SIGTERM/SIGHUP, a closed terminal) writes, before
anything optional:
1. status "running" with `stopping: true` (so a kill from here on is settled as a stop on the
   next open: RunDir.settle), and the checkpoint's optional work as pending (pending.json);
2. the checkpoint of the steps taken (no validation loss: that is the pending work);
3. status "stopped" at the checkpoint's step.
A second signal during that exits at once (`stop_at_once`): no new save; a swap cut short is
finished or undone, the run is stopped at its newest whole checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.events import FinishedEvent, StopRequested
from sdstudio.core.runs.run_dir import RUNNING, STOPPED

OOM_HINT = ("out of memory. Each of these lowers memory: train_batch_size, resolution, "
            "gradient_checkpointing = true, fast_path = false (never folds the gradient_accumulation_steps "
            "micro-batches into one pass), mixed_precision = \"bf16\" or \"fp16\", train_text_encoder = false, "
            "cache_latents = true, use_8bit_adam = true, rank, num_validation_images")
FULL_OOM_HINT = (", and for a full fine-tune: fused_backward = true, master_weights = \"bf16\", optimizer = \"adafactor\" "
                 "or \"adamw8bit\", ema_on_cpu = true (or use_ema = false)")


def abortable_steps(unet: Any, should_abort: Callable[[], bool]) -> None:
    """Let a stop end the optimizer step in flight, in the UNet's forward or backward, between
    two of its blocks: nothing has changed the weights before `optimizer.step()`, so the stop's
    checkpoint holds the previous step exactly (data and noise come from per-position generators,
    so the resume redoes the same step). Hooks, as PyTorch has no other way into a running forward
    or backward: before each block, and on each block's output's gradient. A step on a slow box (a
    large model, a CPU) would otherwise hold a stop for seconds, past a hang-up's 5 s."""
    import torch

    def check(*_args: Any) -> None:
        if should_abort():
            raise StopRequested()

    def on_output(_module: Any, _inputs: Any, output: Any) -> None:
        tensor = output[0] if isinstance(output, tuple) else output
        if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
            tensor.register_hook(check)

    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        if block is not None:
            block.register_forward_pre_hook(check)
            block.register_forward_hook(on_output)


def stop_cleanly(trainer: Any) -> None:
    """The stop contract above, for `trainer` (a training.trainer.Trainer)."""
    run_dir = trainer.run_dir
    if run_dir is None or not run_dir.exists():
        return
    trainer._stopping = True
    trainer.review.abandon()  # a stop waits for no background scoring
    latest = run_dir.latest_checkpoint()
    models = trainer.models
    if trainer._updating:
        trainer.log(f"stopped inside step {trainer.step + 1}'s update: its weights are not kept", "warning")
    elif trainer.step > 0 and models is not None and models.lr_scheduler is not None \
            and (latest is None or latest.step != trainer.step):
        trainer._status(RUNNING, force=True, stopping=True)
        if trainer.is_main:
            trainer.review.defer(trainer.step, run_dir, trainer.sampling)
        trainer.log(f"stopping: saving a checkpoint at step {trainer.step}")
        trainer.save(review=False)
    trainer._end_status(STOPPED)
    trainer.log(f"stopped at step {trainer.step}; resume with `sdstudio train --resume {run_dir.path}`")
    trainer.emit(FinishedEvent(trainer.step, run_dir.path, stopped=True))


def stop_at_once(trainer: Any) -> None:
    """A second signal while stopping: no new save, stopped at the newest whole checkpoint."""
    run_dir = trainer.run_dir
    if not trainer.is_main or run_dir is None or not run_dir.exists():
        return
    run_dir.recover_checkpoints()
    latest = run_dir.latest_checkpoint()
    trainer.step = latest.step if latest is not None else 0
    trainer._status(STOPPED, force=True)
    trainer.log(f"stopped at once at step {trainer.step} (a second signal); resume with "
                f"`sdstudio train --resume {run_dir.path}`", "warning")
    trainer.emit(FinishedEvent(trainer.step, run_dir.path, stopped=True))


def failure_message(exc: BaseException, cfg: Any, step: int, folded: bool) -> str:
    """What status.json and the FailedEvent say about a failure (out of memory: what lowers it)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        hint = OOM_HINT + (FULL_OOM_HINT if getattr(cfg, "full", False) else "")
        return (f"{hint} (step {step}, train_batch_size={cfg.train_batch_size}, gradient_accumulation_steps="
                f"{cfg.gradient_accumulation_steps}, folded={folded}, resolution={cfg.resolution})")
    if isinstance(exc, SdstudioError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
