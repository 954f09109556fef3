"""Training examples, their caches, and the deterministic order they are drawn in.

Order, noise and timesteps are functions of (seed, micro-batch index, process), never of
hidden RNG state, so a resumed run draws exactly what an uninterrupted one would.
Latents (as the VAE's mean/std, sampled per step) and text embeddings are computed once
while they cannot change: the VAE is frozen, and the text encoder unless it is trained.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.dataset import check_dataset, load_rgb, preprocess, require_usable


@dataclass(frozen=True)
class Example:
    path: Path
    caption: str
    square: bool = True  # from the dataset check's size: on squares every crop is the centre crop


def instance_examples(cfg: TrainConfig) -> tuple[list[Example], list[str]]:
    """Usable training examples and one line per skipped file (for the run's log)."""
    if cfg.resolved_method == "text2image":
        root, field_name = Path(cfg.train_data_dir or ""), "train_data_dir"
        report = check_dataset(root, captions=True, caption_column=cfg.caption_column)
    else:
        root, field_name = Path(cfg.instance_data_dir or ""), "instance_data_dir"
        report = check_dataset(root, captions=False)
    usable = require_usable(report, field_name)
    skipped = [f"skipped {root / f.name}: {f.reason}" for f in report.files if not f.usable]
    prompt = cfg.instance_prompt or ""
    examples = [Example(root / f.name, f.caption if cfg.resolved_method == "text2image" else prompt,
                        f.width == f.height) for f in usable]
    return examples, skipped


def class_examples(cfg: TrainConfig) -> list[Example]:
    report = check_dataset(Path(cfg.class_data_dir or ""), captions=False)
    usable = require_usable(report, "class_data_dir")[: cfg.num_class_images]
    return [Example(Path(cfg.class_data_dir or "") / f.name, cfg.class_prompt or "", f.width == f.height)
            for f in usable]


def stream_index(position: int, length: int, seed: int) -> int:
    """The item at `position` of an endless stream of per-epoch shuffles of range(length)."""
    import torch

    epoch, offset = divmod(position, length)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return int(torch.randperm(length, generator=g)[offset])


def micro_batch_generator(seed: int, micro_batch: int, rank: int) -> Any:
    import torch

    return torch.Generator().manual_seed((seed * 7_919 + micro_batch) * 131 + rank)


def pixel_tensor(image: Any) -> Any:
    """PIL RGB -> float tensor (3, H, W) in [-1, 1]."""
    import numpy as np
    import torch

    arr = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class ExampleSource:
    """Turns examples into latents and text embeddings, from caches where valid."""

    def __init__(self, cfg: TrainConfig, vae: Any, text_encoder: Any, tokenizer: Any, device: Any,
                 weight_dtype: Any, all_square: bool = False) -> None:
        self.cfg = cfg
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.device = device
        self.weight_dtype = weight_dtype
        self.scaling = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
        # A random crop changes every epoch: only a centre crop (with or without flip) can be cached;
        # on square images every crop is the centre crop.
        self.cache_latents = bool(cfg.cache_latents and (cfg.center_crop or all_square))
        self.cache_text = cfg.cache_latents and not cfg.train_text_encoder
        self._latent_cache: dict[tuple[Path, bool], Any] = {}
        self._text_cache: dict[str, Any] = {}

    # images -> latents
    def _moments(self, pixels: Any) -> Any:
        import torch

        with torch.no_grad():
            dist = self.vae.encode(pixels.to(self.device, dtype=self.vae.dtype)).latent_dist
        return torch.cat([dist.mean, dist.std], dim=1).float()

    @property
    def frozen_modules_idle(self) -> bool:
        """True when training never calls the VAE nor the text encoder (both outputs cached)."""
        return self.cache_latents and self.cache_text

    def precompute(self, examples: list[Example], check: Callable[[], None] = lambda: None) -> None:
        """Encode every (image, flip) once; text embeddings of every distinct caption once.
        `check` is called between chunks (it raises to stop)."""
        import torch

        if self.cache_latents:
            flips = (False, True) if self.cfg.random_flip else (False,)
            todo = [(ex.path, f) for ex in examples for f in flips if (ex.path, f) not in self._latent_cache]
            for start in range(0, len(todo), 8):
                check()
                chunk = todo[start : start + 8]
                pixels = torch.stack([pixel_tensor(preprocess(load_rgb(p), self.cfg.resolution, True, f)) for p, f in chunk])
                moments = self._moments(pixels).cpu()
                for key, m in zip(chunk, moments):
                    self._latent_cache[key] = m
        if self.cache_text:
            for caption in sorted({ex.caption for ex in examples} - set(self._text_cache)):
                check()
                self._text_cache[caption] = self._encode_text([caption])[0].cpu()

    def latents(self, examples: list[Example], generator: Any) -> Any:
        """Latents for a micro-batch. The generator is drawn from identically whether the
        latents come from the cache or from the VAE, so both paths see the same noise."""
        import torch

        flips = [bool(self.cfg.random_flip and torch.rand((), generator=generator) < 0.5) for _ in examples]
        crop_seed = int(torch.randint(0, 2**31, (), generator=generator))
        if self.cache_latents:
            moments = torch.stack([self._latent_cache[(ex.path, f)] for ex, f in zip(examples, flips)])
        else:
            crop_rng = random.Random(crop_seed)
            pixels = torch.stack([
                pixel_tensor(preprocess(load_rgb(ex.path), self.cfg.resolution, self.cfg.center_crop, f, crop_rng))
                for ex, f in zip(examples, flips)
            ])
            moments = self._moments(pixels).cpu()
        mean, std = moments.chunk(2, dim=1)
        sample = mean + std * torch.randn(mean.shape, generator=generator)
        return ((sample - self.shift) * self.scaling).to(self.device, dtype=self.weight_dtype)

    # captions -> embeddings
    def _encode_text(self, captions: list[str]) -> Any:
        ids = self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids, return_dict=False)[0]

    def text(self, examples: list[Example]) -> Any:
        import torch

        if self.cache_text:
            return torch.stack([self._text_cache[ex.caption] for ex in examples]).to(self.device, dtype=self.weight_dtype)
        return self._encode_text([ex.caption for ex in examples])
