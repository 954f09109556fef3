"""A validation loss that can be compared between checkpoints and between runs.

Trainers that report a validation loss usually draw fresh noise and one timestep per
evaluation, so the number wanders by more than the checkpoints differ. Here every
evaluation sees the same inputs:

- the held-out images: `validation_split` of the dataset (chosen by a fixed seed and kept
  out of training), or `validation_data_dir`; without either, a fixed subset of at most
  TRAINING_SUBSET training images (all of DreamBooth's handful), at fixed noise, and the run's
  log says so: its cost stays the same however large the dataset is;
- their latents: the VAE's mean of the centre crop, unflipped (no sampling);
- K timesteps stratified across the schedule, t_k = (k + 1/2) * T / K, for every image;
- one noise tensor per (image, timestep) from a generator with a fixed seed that does not
  depend on the run's seed, so two runs on the same data are measured on the same noise.

The loss is the plain denoising MSE (no SNR weighting, so runs with other loss weights
stay comparable), averaged over images and timesteps, computed in fixed-size batches in a
fixed order: on a CPU two evaluations of the same weights are bit-identical.
The library has no such evaluator (diffusers' scripts only sample images), hence this module.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.progress import Progress
from sdstudio.core.training.examples import Example, pixel_tensor

NOISE_SEED = 20_240_515  # fixed: the noise must not change with the run's seed
SPLIT_SEED = 7  # which images a validation_split holds out (the same for every run on the data)
BATCH = 8  # fixed batch size: the same sums in the same order on every evaluation
TRAINING_SUBSET = 16  # without a held-out set: at most this many training images (x K timesteps)


@dataclass(frozen=True)
class HeldOut:
    """The images the validation loss is measured on, and how they were chosen (for the log/UI)."""

    examples: list[Example]
    source: str  # "split", "folder" or "training"
    note: str

    @property
    def short(self) -> str:
        """What the loss is measured on, in a few words (the Train screen, metrics.jsonl)."""
        if self.source == "training":
            return "training images at fixed noise"
        if self.source == "subset":
            return f"{len(self.examples)} training images at fixed noise"
        return f"{len(self.examples)} held-out images"


@dataclass(frozen=True)
class ValidationResult:
    loss: float
    per_timestep: dict[int, float]
    images: int
    timesteps: int
    seconds: float

    def row(self, step: int) -> dict[str, Any]:
        """The metrics.jsonl row (RunDir.validation_losses() reads it back)."""
        return {"step": step, "val_loss": self.loss, "val_seconds": self.seconds, "val_images": self.images,
                "val_timesteps": self.timesteps, "time": time.time()}


def _folder_examples(cfg: TrainConfig, folder: Path) -> list[Example]:
    from sdstudio.core.dataset import check_dataset, require_usable

    text2image = cfg.resolved_method == "text2image"
    report = check_dataset(folder, captions=text2image, caption_column=cfg.caption_column) if text2image \
        else check_dataset(folder, captions=False)
    usable = require_usable(report, "validation_data_dir")
    prompt = cfg.instance_prompt or ""
    return [Example(folder / f.name, f.caption if text2image else prompt, f.width == f.height) for f in usable]


def split_examples(cfg: TrainConfig, examples: list[Example]) -> tuple[list[Example], HeldOut]:
    """(examples to train on, held-out set). Only a validation_split removes images from training."""
    import random

    from sdstudio.core.errors import ConfigError

    if cfg.validation_data_dir:
        held = _folder_examples(cfg, Path(cfg.validation_data_dir))
        return examples, HeldOut(held, "folder", f"validation loss on {len(held)} held-out images in {cfg.validation_data_dir}")
    if cfg.validation_split > 0:
        ordered = sorted(examples, key=lambda e: (str(e.path), e.caption))
        n = max(1, round(cfg.validation_split * len(ordered)))
        if n >= len(ordered):
            raise ConfigError("validation_split", f"holds out {n} of {len(ordered)} images and leaves none to train on; "
                              "lower it or use validation_data_dir")
        chosen = set(random.Random(SPLIT_SEED).sample(range(len(ordered)), n))
        held = [e for i, e in enumerate(ordered) if i in chosen]
        keep = [e for e in examples if e not in held]
        return keep, HeldOut(held, "split", f"validation loss on {n} of {len(ordered)} images held out of training "
                                            f"(validation_split = {cfg.validation_split:g})")
    advice = "no held-out set: set validation_split or validation_data_dir for one"
    if len(examples) <= TRAINING_SUBSET:
        return examples, HeldOut(list(examples), "training",
                                 f"validation loss on the {len(examples)} training images at fixed noise ({advice})")
    ordered = sorted(examples, key=lambda e: (str(e.path), e.caption))
    chosen = sorted(random.Random(SPLIT_SEED).sample(range(len(ordered)), TRAINING_SUBSET))
    return examples, HeldOut([ordered[i] for i in chosen], "subset",
                             f"validation loss on a fixed subset of {TRAINING_SUBSET} of the {len(examples)} training "
                             f"images at fixed noise ({advice})")


def stratified_timesteps(num_train_timesteps: int, k: int) -> list[int]:
    """K timesteps, one in the middle of each of K equal slices of the schedule."""
    return [min(num_train_timesteps - 1, int((i + 0.5) * num_train_timesteps / k)) for i in range(k)]


class ValidationLoss:
    """Fixed inputs prepared once; `evaluate(unet)` measures one set of weights on them."""

    def __init__(self, cfg: TrainConfig, held: HeldOut, vae: Any, text_encoder: Any, tokenizer: Any,
                 noise_scheduler: Any, device: Any, text_encoder_2: Any = None, tokenizer_2: Any = None) -> None:
        """SDXL passes its second text encoder and tokenizer: the UNet then also gets the pooled
        text and the size/crop time ids of each centre-cropped image (sdxl.py)."""
        import torch

        from sdstudio.core.dataset import crop_box, load_rgb, preprocess

        self.cfg, self.held, self.device = cfg, held, device
        self.tokenizer, self.scheduler = tokenizer, noise_scheduler
        self.tokenizer_2 = tokenizer_2
        self.time_ids = None
        self.prediction_type = noise_scheduler.config.prediction_type
        self.timesteps = stratified_timesteps(int(noise_scheduler.config.num_train_timesteps), cfg.validation_loss_timesteps)
        scaling = float(getattr(vae.config, "scaling_factor", 0.18215))
        shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
        latents, conds = [], []
        with torch.no_grad():
            for start in range(0, len(held.examples), BATCH):
                images = [load_rgb(e.path) for e in held.examples[start:start + BATCH]]
                for im in images:  # SDXL's (original h, w, crop top, left, target h, w) of the centre crop
                    box = crop_box(im.width, im.height, cfg.resolution, True, None)[1]
                    conds.append([im.height, im.width, box[1], box[0], cfg.resolution, cfg.resolution])
                pixels = torch.stack([pixel_tensor(preprocess(im, cfg.resolution, True, False)) for im in images])
                mean = vae.encode(pixels.to(device, dtype=vae.dtype)).latent_dist.mean.float().cpu()
                latents.append((mean - shift) * scaling)
        self.latents = torch.cat(latents)  # (N, C, h, w), fp32 on the CPU
        g = torch.Generator().manual_seed(NOISE_SEED)
        self.noise = torch.randn((len(self.timesteps), *self.latents.shape), generator=g)  # (K, N, C, h, w)
        self.captions = [e.caption for e in held.examples]
        if tokenizer_2 is not None:
            self.time_ids = torch.tensor(conds, dtype=torch.float32)
        self._text = None if cfg.train_text_encoder else self._encode(text_encoder, text_encoder_2)

    def _encode(self, text_encoder: Any, text_encoder_2: Any = None) -> tuple[Any, Any]:
        """(per-image text hidden states, SDXL's pooled text or None), fp32 on the CPU."""
        import torch

        if text_encoder_2 is None:
            ids = self.tokenizer(self.captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self.device)
            with torch.no_grad():
                return text_encoder(ids, return_dict=False)[0].float().cpu(), None
        hidden, pooled = [], None
        with torch.no_grad():
            for tokenizer, encoder in ((self.tokenizer, text_encoder), (self.tokenizer_2, text_encoder_2)):
                ids = tokenizer(self.captions, padding="max_length", max_length=tokenizer.model_max_length,
                                truncation=True, return_tensors="pt").input_ids.to(self.device)
                out = encoder(ids, output_hidden_states=True, return_dict=True)
                hidden.append(out.hidden_states[-2].float().cpu())
                pooled = (out.text_embeds if hasattr(out, "text_embeds") else out[0]).float().cpu()
        return torch.cat(hidden, dim=-1), pooled

    def evaluate(self, unet: Any, text_encoder: Any = None, text_encoder_2: Any = None,
                 should_stop: Any = None) -> ValidationResult | None:
        """The mean denoising MSE of `unet` (and trained text encoders) on the fixed inputs; None
        when `should_stop()` turned true meanwhile (a stop never waits for it)."""
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        text, pooled = self._text if self._text is not None else self._encode(text_encoder, text_encoder_2)
        dtype = next(p for p in unet.parameters()).dtype
        was_training = unet.training
        unet.eval()
        n = self.latents.shape[0]
        jobs = [(k, i) for k in range(len(self.timesteps)) for i in range(n)]
        losses = torch.zeros(len(jobs), dtype=torch.float64)
        progress = Progress("validation loss", len(jobs), "passes")
        try:
            with torch.no_grad():
                for start in range(0, len(jobs), BATCH):
                    if should_stop is not None and should_stop():
                        return None
                    chunk = jobs[start:start + BATCH]
                    lat = torch.stack([self.latents[i] for _, i in chunk])
                    eps = torch.stack([self.noise[k, i] for k, i in chunk])
                    t = torch.tensor([self.timesteps[k] for k, _ in chunk], dtype=torch.long)
                    noisy = self.scheduler.add_noise(lat, eps, t)
                    target = self.scheduler.get_velocity(lat, eps, t) if self.prediction_type == "v_prediction" else eps
                    ctx = torch.stack([text[i] for _, i in chunk])
                    extra = {}
                    if pooled is not None:
                        idx = [i for _, i in chunk]
                        extra["added_cond_kwargs"] = {"text_embeds": pooled[idx].to(self.device, dtype=dtype),
                                                      "time_ids": self.time_ids[idx].to(self.device, dtype=dtype)}
                    pred = unet(noisy.to(self.device, dtype=dtype), t.to(self.device), ctx.to(self.device, dtype=dtype),
                                return_dict=False, **extra)[0]
                    err = F.mse_loss(pred.float().cpu(), target.float(), reduction="none").mean(dim=(1, 2, 3))
                    losses[start:start + len(chunk)] = err.double()
                    progress.update(start + len(chunk))
        finally:
            if was_training:
                unet.train()
        per_t = losses.view(len(self.timesteps), n).mean(dim=1)
        return ValidationResult(loss=float(losses.mean()), per_timestep={t: float(v) for t, v in zip(self.timesteps, per_t)},
                                images=n, timesteps=len(self.timesteps), seconds=time.perf_counter() - t0)
