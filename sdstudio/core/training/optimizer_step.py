"""One optimizer step of a run: the micro-batches' forward and backward, the loss check, the
update (training/setup.py `TrainingModels.update`) and, for a full run, its EMA.

Kept apart from the trainer's lifecycle. The trainer's flags tell a stop what it may do:
`_in_step` (forward/backward, weights untouched: a stop may end the step, see
stopping.abortable_steps) and `_updating` (weights changing: the step is finished, not cut).
With fused backward the weights change during the backward, so only the forward is abortable
and the loss is checked before the backward, since the update follows it directly.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from sdstudio.core.errors import TrainingError
from sdstudio.core.training import precision


def _check_finite(trainer: Any, mean_loss: float) -> None:
    if not math.isfinite(mean_loss) and trainer.accelerator.scaler is None:  # a GradScaler skips the step instead
        last_good = trainer.run_dir.latest_checkpoint() if trainer.run_dir else None
        keep = f"the last good checkpoint is {last_good.path}" if last_good else "no checkpoint was saved yet"
        raise TrainingError(f"loss became {mean_loss} at step {trainer.step + 1}; {keep}. Lower learning_rate, "
                            "or use mixed_precision = \"bf16\" or \"no\"")


def _no_sync(trainer: Any, skip: bool) -> Any:
    """No gradient all-reduce for the micro-batches before the last one (every trained model)."""
    stack = contextlib.ExitStack()
    if skip:
        for model in trainer.models.trained().values():  # SDXL's text_encoder_2 included
            stack.enter_context(trainer.accelerator.no_sync(model))
    return stack


def _fused_backward(trainer: Any, first: int) -> float:
    """One micro-batch (config_checks refuses accumulation with fused backward), one process."""
    loss = trainer.models.loss([first])
    mean_loss = float(loss.detach().float())
    _check_finite(trainer, mean_loss)
    trainer._in_step = False
    trainer._updating = True  # each parameter steps as its gradient arrives
    trainer.accelerator.backward(loss)
    return mean_loss


def take_step(trainer: Any) -> float:
    """One optimizer step of `trainer` (a training.trainer.Trainer); returns its mean loss."""
    import torch

    cfg, acc = trainer.cfg, trainer.accelerator
    accum = cfg.gradient_accumulation_steps
    first = trainer.step * accum
    probing = trainer.folding.probing
    if probing:
        trainer.folding.begin_probe()
    trainer._in_step = True  # until the update: a stop may end the step here (stopping.abortable_steps)
    if cfg.full and cfg.fused_backward:
        mean_loss = _fused_backward(trainer, first)
    else:
        if trainer.folding.fold:
            loss = trainer.models.loss(list(range(first, first + accum)))
            acc.backward(loss)
            total = loss.detach().float()
        else:
            total = torch.zeros((), device=trainer.device)
            for a in range(accum):
                with _no_sync(trainer, a < accum - 1):
                    loss = trainer.models.loss([first + a])
                    acc.backward(loss / accum)
                total += loss.detach().float() / accum
        mean_loss = float(acc.reduce(total, reduction="mean")) if acc.num_processes > 1 else float(total)
        _check_finite(trainer, mean_loss)
    trainer._in_step = False
    trainer._updating = True
    trainer.models.update(lambda: acc.clip_grad_norm_(trainer.models.params, cfg.max_grad_norm))
    trainer.step += 1
    trainer._updating = False
    if trainer.models.full is not None:
        trainer.models.full.after_step(trainer.step)
    if probing:
        trainer.log(trainer.folding.end_probe())
    probe = trainer._lora_probe
    if probe is not None and probe.seen is not None:
        trainer.log(f"LoRA compute dtype: {precision.dtype_name(probe.seen)} (measured in the first step; "
                    f"mixed_precision = \"{cfg.mixed_precision}\", frozen weights "
                    f"{precision.dtype_name(trainer.weight_dtype)}, autocast {'on' if trainer.precision.autocast else 'off'})")
        trainer._lora_probe = None
    return mean_loss
