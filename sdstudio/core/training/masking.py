"""Masked loss: which training images have a subject mask, the log line that says so, and the
mask as a per-latent-pixel loss weight.

With `masked_loss = true` each instance image's loss is a weighted mean of its per-pixel squared
error, the weight `unmasked_weight + (1 - unmasked_weight) * mask` (1 on the subject, the
unmasked weight on the background). The mask is rendered through the image's own view
(subject crop, resize, bucket crop, flip: view.py), then brought to the latent size by area
interpolation (each latent pixel gets the mean of the mask over the pixels it encodes). An
image whose weights sum to 0 (an empty mask with unmasked_weight 0) contributes nothing.
Class images of prior preservation, and instance images without a mask, weigh 1 everywhere.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.errors import ConfigError
from sdstudio.core.masks.source import coverage, find_mask, read_mask
from sdstudio.core.training.view import View


def attach_masks(cfg: TrainConfig, root: Path, examples: list[Any]) -> list[Any]:
    """The examples with their mask source (`Example.mask`) found; refuses masked_loss when none has one."""
    mask_dir = Path(cfg.mask_dir) if cfg.mask_dir else None
    out = [replace(ex, mask=find_mask(ex.path, root, mask_dir)) for ex in examples]
    if cfg.masked_loss and not any(ex.mask for ex in out):
        where = f"{root}: no image has an alpha channel, a NAME-mask.png beside it" + (
            f" or a mask in mask_dir = {mask_dir}" if mask_dir else " or a mask in mask_dir (not set)")
        raise ConfigError("masked_loss", f"{where}. Make masks with `sdstudio dataset mask {root} --prompt \"the "
                          "subject\"`, or set masked_loss = false")
    return out


def mask_lines(cfg: TrainConfig, examples: list[Any]) -> list[str]:
    """What the run's log says about masks, so nobody has to guess whether they are used."""
    masked = [ex for ex in examples if ex.mask is not None]
    if not masked:
        return []
    covered = [coverage(read_mask(ex.mask)) for ex in masked]
    mean = 100.0 * sum(covered) / len(covered)
    state = (f"masked_loss on, unmasked_weight {cfg.unmasked_weight:g}" if cfg.masked_loss
             else "masked_loss off (the masks are not used)")
    lines = [f"masks: {len(masked)} of {len(examples)} images, mean coverage {mean:.0f} %; {state}"]
    if cfg.masked_loss:
        bare = [ex.path.name for ex in examples if ex.mask is None]
        if bare:
            lines.append(f"{len(bare)} images without a mask train on the whole picture (weight 1): "
                         + ", ".join(bare[:5]) + (", ..." if len(bare) > 5 else ""))
        empty = [ex.path.name for ex, c in zip(masked, covered) if c == 0.0]
        if empty and cfg.unmasked_weight == 0:
            lines.append(f"{len(empty)} masks are empty: with unmasked_weight 0 these images teach nothing: "
                         + ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else ""))
    return lines


def latent_mask(mask: Any, view: View, latent_hw: tuple[int, int]) -> Any:
    """The mask ("L") as the model sees it, area-averaged to the latent size: a (1, h, w) float tensor in [0, 1]."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    seen = np.asarray(view.render(mask), dtype=np.float32) / 255.0
    pixels = torch.from_numpy(seen)[None, None]
    return F.interpolate(pixels, size=latent_hw, mode="area")[0]


def loss_weight(mask: Any, unmasked_weight: float) -> Any:
    """Per-latent-pixel loss weight of a mask in [0, 1]: the subject 1, the background `unmasked_weight`."""
    return unmasked_weight + (1.0 - unmasked_weight) * mask


def weighted_mean(squared_error: Any, weight: Any) -> Any:
    """Each item's weighted mean of its (C, h, w) squared error under a (1, h, w) weight; 0 where the
    weight sums to 0 (the item then adds nothing, and no gradient)."""
    total = (squared_error * weight).sum(dim=(1, 2, 3))
    area = weight.sum(dim=(1, 2, 3)) * squared_error.shape[1]
    return total / area.clamp_min(1e-12)
