"""How many checkpoints a run keeps (`checkpoints_total_limit`), and which ones pruning spares.

A full fine-tune's checkpoint is gigabytes (SD 1.5 with AdamW: the fp32 UNet 3.4 GB, its
optimizer state 6.9 GB, the EMA 3.4 GB; SDXL about three times that), so a full run left
without a limit keeps FULL_DEFAULT_LIMIT; a LoRA run (megabytes) keeps everything, as before.
Pruning never removes the newest checkpoint (resume needs it) nor a favourite (RunDir), and
never the one the run's own measurements point at, both read from files already written:
the recommendation in scores.jsonl (image scorers) and the lowest validation loss in
metrics.jsonl. A run may so keep up to two checkpoints above its limit.
"""

from __future__ import annotations

from typing import Any

FULL_DEFAULT_LIMIT = 3


def limit(cfg: Any) -> int | None:
    """The run's limit: the config's, else FULL_DEFAULT_LIMIT for a full run, else none."""
    if cfg.checkpoints_total_limit is not None:
        return int(cfg.checkpoints_total_limit)
    return FULL_DEFAULT_LIMIT if cfg.full else None


def protected(run: Any) -> set[int]:
    """Steps pruning must keep: the recommended checkpoint and the one of lowest validation loss."""
    keep: set[int] = set()
    losses = run.validation_losses()
    if losses:
        keep.add(min(losses, key=lambda step: (losses[step], step)))
    try:
        from sdstudio.core.training.scoring import read_scores

        rec = read_scores(run).recommendation
    except (OSError, ValueError, TypeError, KeyError):
        rec = None
    if rec is not None and rec.step is not None:
        keep.add(int(rec.step))
    return keep
