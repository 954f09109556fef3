"""The loss of one optimizer step: denoising MSE over a set of micro-batches.

Kept apart from the trainer's lifecycle (setup, checkpoints, samples, events): this is the
part that must give the same numbers on the fast path and the plain path. `StepLoss` is
given everything it reads when it is built, so it can be read (and tested) on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.training.examples import Example, ExampleSource, bucket_batch, micro_batch_generator, stream_index
from sdstudio.core.training.masking import weighted_mean


def _shape(ex: Example) -> Any:
    return ex.placement.bucket if ex.placement is not None else None


@dataclass
class StepLoss:
    """Draws micro-batches, noises them and returns the weighted denoising loss."""

    cfg: TrainConfig
    source: ExampleSource
    unet: Any  # the prepared (possibly DDP-wrapped or compiled) UNet
    noise_scheduler: Any
    device: Any
    weight_dtype: Any
    channels_last: bool
    num_processes: int
    process_index: int
    examples: list[Example]
    class_examples: list[Example] = field(default_factory=list)

    @property
    def prediction_type(self) -> str:
        return str(self.noise_scheduler.config.prediction_type)

    def _batch(self, stream: list[Example], micro: int, seed: int) -> list[Example]:
        b = self.cfg.train_batch_size
        if stream and stream[0].placement is not None:  # buckets: the whole micro-batch from one bucket
            return bucket_batch(stream, b, micro * self.num_processes + self.process_index, seed)
        first = (micro * self.num_processes + self.process_index) * b
        return [stream[stream_index(first + j, len(stream), seed)] for j in range(b)]

    def __call__(self, micros: list[int]) -> Any:
        """Mean loss of the given micro-batches, computed in one forward pass per latent shape.

        Each micro-batch draws its examples, noise and timesteps from its own generator, so
        folding micro-batches together gives the same loss (and gradient) as running them
        one by one.
        """
        import torch

        cfg = self.cfg
        # Parts of one latent shape go through the UNet together; with buckets (or prior
        # preservation whose class images sit in another bucket) there is one pass per shape.
        groups: dict[tuple[int, ...], dict[str, list[Any]]] = {}
        for micro in micros:
            g = micro_batch_generator(cfg.seed, micro, self.process_index)
            inst = self._batch(self.examples, micro, cfg.seed)
            cls = self._batch(self.class_examples, micro, cfg.seed + 1) if cfg.with_prior_preservation else []
            inst_w, cls_w = [1.0] * len(inst), [cfg.prior_loss_weight] * len(cls)
            if not cls or _shape(cls[0]) == _shape(inst[0]):
                parts = [(inst + cls, inst_w + cls_w)]  # one draw for both, as without buckets
            else:
                parts = [(inst, inst_w), (cls, cls_w)]
            for items, item_w in parts:
                lat, conds, pixel_w = self.source.draw(items, g)
                n = torch.randn(lat.shape, generator=g)
                if cfg.noise_offset:
                    n = n + cfg.noise_offset * torch.randn((lat.shape[0], lat.shape[1], 1, 1), generator=g)
                t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (lat.shape[0],), generator=g)
                group = groups.setdefault(tuple(lat.shape[1:]), {"lat": [], "eps": [], "t": [], "items": [], "conds": [], "w": [],
                                                                   "px": []})
                group["lat"].append(lat)
                group["eps"].append(n.to(lat))
                group["t"].append(t)
                group["items"] += items
                group["conds"] += conds
                if pixel_w is not None:
                    group["px"].append(pixel_w)
                group["w"] += [w / (cfg.train_batch_size * len(micros)) for w in item_w]
        total = None
        for group in groups.values():
            masked = {"pixel_weights": torch.cat(group["px"])} if group["px"] else {}  # only with masked_loss
            part = self._group_loss(torch.cat(group["lat"]), torch.cat(group["eps"]), torch.cat(group["t"]).to(self.device),
                                    group["items"], group["conds"], group["w"], **masked)
            total = part if total is None else total + part
        return total

    def _group_loss(self, lat: Any, eps: Any, t: Any, items: list[Example], conds: list[Any], weights: list[float],
                    pixel_weights: Any = None) -> Any:
        """Weighted denoising loss of items that share one latent shape: one UNet pass. With masked_loss,
        `pixel_weights` (B, 1, h, w) make each item's loss a weighted mean over its latent pixels (masking.py)."""
        import torch
        import torch.nn.functional as F

        noisy = self.noise_scheduler.add_noise(lat, eps, t)
        target = self.noise_scheduler.get_velocity(lat, eps, t) if self.prediction_type == "v_prediction" else eps
        inputs = self.source.unet_inputs(items, conds)
        if self.channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        # autocast, where the config asks for it, is Accelerate's wrapper of the forward (see precision.py)
        pred = self.unet(noisy, t, return_dict=False, **inputs)[0]
        squared = F.mse_loss(pred.float(), target.float(), reduction="none")
        if pixel_weights is None:
            per_item = squared.mean(dim=(1, 2, 3))
        else:
            per_item = weighted_mean(squared, pixel_weights.to(squared.device))
        if self.cfg.snr_gamma:
            per_item = per_item * self.snr_weights(t)
        return (per_item * torch.tensor(weights, device=per_item.device)).sum()

    def snr_weights(self, timesteps: Any) -> Any:
        """Min-SNR-gamma loss weights (Hang et al. 2023), from diffusers' compute_snr."""
        import torch
        from diffusers.training_utils import compute_snr

        snr = compute_snr(self.noise_scheduler, timesteps)
        clipped = torch.clamp(snr, max=float(self.cfg.snr_gamma))
        return clipped / (snr + 1.0) if self.prediction_type == "v_prediction" else clipped / snr
