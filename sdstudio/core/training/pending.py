"""The optional work a stop left for later (the run's pending.json), done outside a training:
`sdstudio score RUN` calls `complete_pending` before it scores.

A stop writes its checkpoint and status without the validation loss or the validation samples
of that checkpoint (a stop must be quick); the budget on the validation loss may also leave a
checkpoint's loss pending. Here each pending checkpoint's LoRA is loaded onto the base pipeline
(diffusers' `load_lora_weights`, the same file any user loads), or a full fine-tune's components
swapped in (full/loading.py), and measured on the same fixed
inputs as in training (validation_loss.py), then sampled at the run's prompts and seeds. A resumed
run does the same for the checkpoint it resumes from (trainer.py, checkpoint_review.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sdstudio.core.full.layout import is_full_checkpoint
from sdstudio.core.runs.run_dir import LORA_WEIGHTS_NAME, RunDir


def complete_pending(run: RunDir, log: Callable[[str], None] = print) -> list[int]:
    """Measure and sample what pending.json lists; returns the steps done. Steps whose
    checkpoint is gone (pruned) are dropped from the list, saying so."""
    pending = run.pending()
    ckpts = {c.step: c for c in run.checkpoints()}
    for kind, steps in pending.items():
        for step in steps:
            if step not in ckpts:
                run.set_pending(kind, step, waiting=False)
                log(f"step {step}: {kind} no longer pending (its checkpoint is gone)")
    pending = run.pending()
    steps = sorted({s for v in pending.values() for s in v})
    if not steps:
        return []
    import torch
    from diffusers import DDPMScheduler

    from sdstudio.core.config import build_config
    from sdstudio.core.models import load_pipeline, resolve_base_model
    from sdstudio.core.training import validation
    from sdstudio.core.training.examples import instance_examples
    from sdstudio.core.training.validation_loss import ValidationLoss, split_examples

    cfg = build_config(run.config())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    waiting = ", ".join(f"{k} at step {v}" for k, v in sorted(pending.items()))
    log(f"left for later (by a stop or the validation-loss budget): {waiting}; loading {cfg.pretrained_model_name_or_path}")
    pipe = load_pipeline(resolve_base_model(cfg.pretrained_model_name_or_path), vae=cfg.pretrained_vae_model_name_or_path)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    train, held = split_examples(cfg, instance_examples(cfg)[0])
    te2, tok2 = getattr(pipe, "text_encoder_2", None), getattr(pipe, "tokenizer_2", None)
    val = None
    if pending.get("val_loss") and cfg.validation_loss:
        val = ValidationLoss(cfg, held, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                             DDPMScheduler.from_config(pipe.scheduler.config), device, te2, tok2)
    for step in steps:
        with _weights_of(pipe, ckpts[step].path):
            if val is not None and step in pending.get("val_loss", []):
                result = val.evaluate(pipe.unet, pipe.text_encoder, te2)
                assert result is not None
                run.append_metrics({**result.row(step), "val_set": held.short})
                run.set_pending("val_loss", step, waiting=False)
                log(f"validation loss {result.loss:.5f} at step {step} ({result.seconds:.2f} s)")
            if step in pending.get("samples", []) and validation.sampling_on(cfg):
                prompts = validation.validation_prompts(cfg, [ex.caption for ex in train])
                paths = validation.sample(pipe, run, step, cfg, prompts, device)
                run.set_pending("samples", step, waiting=False)
                log(f"samples at step {step}: {len(paths)} images")
    return steps


@contextlib.contextmanager
def _weights_of(pipe: Any, checkpoint: Path) -> Iterator[None]:
    """The checkpoint's weights on the base pipeline for the block: a LoRA loaded and unloaded, or a
    full fine-tune's components swapped in and back (its EMA weights when it has them, as exported)."""
    if is_full_checkpoint(checkpoint):
        from sdstudio.core.full.loading import checkpoint_weights

        with checkpoint_weights(pipe, checkpoint):
            yield
        return
    pipe.load_lora_weights(str(checkpoint), weight_name=LORA_WEIGHTS_NAME)
    try:
        yield
    finally:
        pipe.unload_lora_weights()
