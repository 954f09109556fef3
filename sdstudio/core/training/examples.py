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
from sdstudio.core.dataset import check_dataset, load_rgb, require_usable
from sdstudio.core.errors import DatasetError
from sdstudio.core.masks.crops import Box, clip_box, crops_file, read_crops
from sdstudio.core.masks.source import MaskRef, read_mask
from sdstudio.core.progress import Progress
from sdstudio.core.training import buckets as bk
from sdstudio.core.training import masking
from sdstudio.core.training.view import View, plan, region_size


@dataclass(frozen=True)
class Example:
    path: Path
    caption: str
    square: bool = True  # from the dataset check's size: on squares every crop is the centre crop
    size: tuple[int, int] = (0, 0)  # (width, height) of the file
    placement: bk.Placement | None = None  # its aspect-ratio bucket (placed by the box's size), when enable_bucket
    box: Box | None = None  # its subject crop [x, y, w, h] (core/masks/crops.py): replaces the centre/random crop
    mask: MaskRef | None = None  # its subject mask (instance images; class images stay unmasked)

    @property
    def fixed_crop(self) -> bool:
        """Every crop of this image is the same crop (so its latents can be cached whatever center_crop says)."""
        if self.box is not None:
            return True  # the box's leftover is always cropped centred (view.py)
        return self.placement.fixed if self.placement is not None else self.square


def _boxes(root: Path, files: list) -> tuple[dict[str, Box], list[str]]:
    """Each file's crop box, clipped to its picture, and one warning per box that cannot be used."""
    boxes, bad = read_crops(root)
    warnings = [f"{crops_file(root)} line {n}: {why}; that image keeps the default crop" for n, why in bad]
    sizes = {f.name: (f.width, f.height) for f in files}
    out: dict[str, Box] = {}
    for name, box in boxes.items():
        if name not in sizes:
            continue
        clipped = clip_box(box, sizes[name])
        if clipped is None:
            warnings.append(f"{crops_file(root)}: crop of {name} {list(box)} lies outside its {sizes[name][0]}x"
                            f"{sizes[name][1]} picture; it keeps the default crop (fix it with `sdstudio dataset crop`)")
        else:
            out[name] = clipped
    return out, warnings


def _examples(cfg: TrainConfig, root: Path, files: list, prompt: str | None) -> tuple[list[Example], list[str]]:
    """Examples of usable files with their crop boxes; with buckets, each placed (by its box's size),
    and those too small skipped with the reason."""
    sizes = bk.config_buckets(cfg) if cfg.enable_bucket else None
    boxes, skipped = _boxes(root, files)
    out: list[Example] = []
    for f in files:
        box = boxes.get(f.name)
        placement = bk.place(*region_size((f.width, f.height), box), sizes) if sizes else None
        reason = bk.too_small(placement, cfg.max_upscale) if placement else None
        if reason:
            skipped.append(f"skipped {root / f.name}: {reason}" + (f" (its crop box is {box[2]}x{box[3]})" if box else ""))
            continue
        out.append(Example(root / f.name, f.caption if prompt is None else prompt, f.width == f.height,
                           (f.width, f.height), placement, box))
    return out, skipped


def instance_examples(cfg: TrainConfig) -> tuple[list[Example], list[str]]:
    """Usable training examples (with crop boxes and masks) and one line per skipped file or unusable
    crop box (for the run's log). Refuses masked_loss when no image has a mask."""
    if cfg.resolved_method == "text2image":
        root, field_name = Path(cfg.train_data_dir or ""), "train_data_dir"
        report = check_dataset(root, captions=True, caption_column=cfg.caption_column)
    else:
        root, field_name = Path(cfg.instance_data_dir or ""), "instance_data_dir"
        report = check_dataset(root, captions=False)
    usable = require_usable(report, field_name)
    skipped = [f"skipped {root / f.name}: {f.reason}" for f in report.files if not f.usable]
    prompt = None if cfg.resolved_method == "text2image" else cfg.instance_prompt or ""
    examples, too_small = _examples(cfg, root, usable, prompt)
    if not examples:
        raise DatasetError(f"{field_name} = {root}: every image is too small for its bucket ({too_small[0]})")
    return masking.attach_masks(cfg, root, examples), skipped + too_small


def class_examples(cfg: TrainConfig) -> list[Example]:
    """Prior-preservation images: crop boxes honoured, never masked."""
    root = Path(cfg.class_data_dir or "")
    report = check_dataset(root, captions=False)
    usable = require_usable(report, "class_data_dir")[: cfg.num_class_images]
    examples, too_small = _examples(cfg, root, usable, cfg.class_prompt or "")
    if not examples:
        raise DatasetError(f"class_data_dir = {root}: every image is too small for its bucket ({too_small[0]})")
    return examples


def subject_lines(cfg: TrainConfig, examples: list[Example]) -> list[str]:
    """The run log's lines on subject crops and masks (how many images have them, and whether they are used)."""
    boxed = sum(ex.box is not None for ex in examples)
    lines = [f"crop boxes: {boxed} of {len(examples)} images use their subject crop instead of the "
             f"{'centre' if cfg.center_crop else 'random'} crop"] if boxed else []
    return lines + masking.mask_lines(cfg, examples)


def view_of(ex: Example, resolution: int, center: bool, flip: bool, rng: Any) -> View:
    """What the model sees of this example (view.py): its box, its bucket or the square, the crop, the flip."""
    return plan(ex.size, resolution, ex.placement, ex.box, center, flip, rng)


def stream_index(position: int, length: int, seed: int) -> int:
    """The item at `position` of an endless stream of per-epoch shuffles of range(length)."""
    import torch

    epoch, offset = divmod(position, length)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return int(torch.randperm(length, generator=g)[offset])


_BUCKET_BATCHES: dict[int, tuple[list[Example], bk.BucketBatches]] = {}


def bucket_batch(stream: list[Example], batch_size: int, index: int, seed: int) -> list[Example]:
    """Batch `index` of an endless stream of one-bucket batches of `stream` (see buckets.BucketBatches)."""
    held = _BUCKET_BATCHES.get(id(stream))
    if held is None or held[0] is not stream or held[1].batch_size != batch_size:
        if len(_BUCKET_BATCHES) > 8:
            _BUCKET_BATCHES.clear()
        held = (stream, bk.BucketBatches([ex.placement.bucket for ex in stream], batch_size))  # type: ignore[union-attr]
        _BUCKET_BATCHES[id(stream)] = held
    return [stream[i] for i in held[1].batch(index, seed)]


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
        self.cache_latents = bool(cfg.cache_latents and (cfg.center_crop or all_square))  # all_square: every fixed_crop
        self.cache_text = cfg.cache_latents and not cfg.train_text_encoder
        self._latent_cache: dict[tuple[Path, bool], Any] = {}
        self.masked = bool(cfg.masked_loss)
        self._mask_cache: dict[tuple[Path, bool], Any] = {}  # latent-size masks, beside the latents (None: no mask)
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

    def _pixels(self, ex: Example, flip: bool, center: bool, rng: Any = None) -> tuple[Any, View]:
        """(pixel tensor of what the model sees, its view) of one example."""
        view = view_of(ex, self.cfg.resolution, center, flip, rng)
        return pixel_tensor(view.render(load_rgb(ex.path))), view

    def _mask(self, ex: Example, view: View, latent_hw: tuple[int, int]) -> Any:
        """The example's mask through its view at the latent size (masking.latent_mask), or None."""
        return masking.latent_mask(read_mask(ex.mask), view, latent_hw) if ex.mask is not None else None

    def precompute(self, examples: list[Example], check: Callable[[], None] = lambda: None) -> None:
        """Encode every (image, flip) once, a bucket at a time, with masked_loss its mask beside it
        (same key); text embeddings of every distinct caption once. `check` is called between
        chunks (it raises to stop)."""
        import torch

        if self.cache_latents:
            flips = (False, True) if self.cfg.random_flip else (False,)
            todo = [(ex, f) for ex in examples for f in flips if (ex.path, f) not in self._latent_cache]
            by_shape: dict[Any, list[tuple[Example, bool]]] = {}
            for ex, f in todo:
                by_shape.setdefault(ex.placement.bucket if ex.placement else None, []).append((ex, f))
            progress, done = Progress("caching latents", len(todo), "images"), 0
            for group in by_shape.values():
                for start in range(0, len(group), 8):
                    check()
                    chunk = group[start : start + 8]
                    made = [self._pixels(ex, f, True) for ex, f in chunk]
                    moments = self._moments(torch.stack([px for px, _ in made])).cpu()
                    for (ex, f), m, (_, view) in zip(chunk, moments, made):
                        self._latent_cache[(ex.path, f)] = m
                        if self.masked:
                            self._mask_cache[(ex.path, f)] = self._mask(ex, view, tuple(m.shape[-2:]))
                    done += len(chunk)
                    progress.update(done)
        if self.cache_text:
            for caption in sorted({ex.caption for ex in examples} - set(self._text_cache)):
                check()
                self._text_cache[caption] = self._encode_text([caption])[0].cpu()

    def latents(self, examples: list[Example], generator: Any) -> Any:
        return self.encode(examples, generator)[0]

    def encode(self, examples: list[Example], generator: Any) -> tuple[Any, list[tuple[int, ...]]]:
        """Latents for a micro-batch (all of one shape) and each item's size/crop conditioning."""
        latents, conds, _ = self.draw(examples, generator)
        return latents, conds

    def draw(self, examples: list[Example], generator: Any) -> tuple[Any, list[tuple[int, ...]], Any]:
        """Latents for a micro-batch (all of one shape), each item's size/crop conditioning, and with
        masked_loss the (B, 1, h, w) loss weights (else None; see masking.py).

        The generator is drawn from identically whether the latents come from the cache or
        from the VAE, so both paths see the same noise."""
        import torch

        flips = [bool(self.cfg.random_flip and torch.rand((), generator=generator) < 0.5) for _ in examples]
        crop_seed = int(torch.randint(0, 2**31, (), generator=generator))
        crop_rng = random.Random(crop_seed)
        center = self.cfg.center_crop
        keys = [(ex.path, f) for ex, f in zip(examples, flips)]
        if self.cache_latents:
            views = [view_of(ex, self.cfg.resolution, True, f, None) for ex, f in zip(examples, flips)]
            moments = torch.stack([self._latent_cache[k] for k in keys])
            masks = [self._mask_cache.get(k) for k in keys] if self.masked else []
        else:
            made = [self._pixels(ex, f, center, crop_rng) for ex, f in zip(examples, flips)]
            views = [v for _, v in made]
            moments = self._moments(torch.stack([p for p, _ in made])).cpu()
            hw = tuple(moments.shape[-2:])
            masks = [self._mask(ex, v, hw) for ex, v in zip(examples, views)] if self.masked else []
        mean, std = moments.chunk(2, dim=1)
        sample = mean + std * torch.randn(mean.shape, generator=generator)
        latents = ((sample - self.shift) * self.scaling).to(self.device, dtype=self.weight_dtype)
        weights = None
        if self.masked:  # no mask (class images, unmasked instance images): weight 1 everywhere
            ones = torch.ones((1, *mean.shape[-2:]))
            weights = torch.stack([ones if m is None else masking.loss_weight(m, self.cfg.unmasked_weight)
                                   for m in masks]).to(self.device)
        return latents, [v.conditioning() for v in views], weights

    # captions -> embeddings
    def _encode_text(self, captions: list[str]) -> Any:
        ids = self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids, return_dict=False)[0]

    def unet_inputs(self, examples: list[Example], conds: list[tuple[int, ...]]) -> dict[str, Any]:
        """The UNet's conditioning keywords for these examples (SDXL adds pooled text and time ids)."""
        return {"encoder_hidden_states": self.text(examples)}

    def text(self, examples: list[Example]) -> Any:
        import torch

        if self.cache_text:
            return torch.stack([self._text_cache[ex.caption] for ex in examples]).to(self.device, dtype=self.weight_dtype)
        return self._encode_text([ex.caption for ex in examples])
