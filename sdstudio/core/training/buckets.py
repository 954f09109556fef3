"""Aspect-ratio buckets: train on each picture at about its own shape instead of a square crop.

A bucket is a (width, height) of about `resolution**2` pixels with both sides multiples of
`step` (64 px by default, what the VAE and the UNet's downsampling need with margin). Each
image goes to the bucket nearest its aspect ratio; it is resized (never by more than
`max_upscale`) until it covers the bucket, then the leftover (less than one step) is cropped,
centred or at random. The crop's top-left corner is recorded: SDXL is conditioned on it.

Batches are drawn from one bucket at a time, in an order that is a pure function of
(seed, batch index), so a resumed run draws exactly what an uninterrupted one would.

Written here rather than taken from a library: diffusers' training utilities have no bucketing,
and kohya's bucket manager lives inside its training scripts (not an importable package).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_STEP = 64
DEFAULT_MAX_UPSCALE = 2.0

Size = tuple[int, int]  # (width, height)


def bucket_sizes(resolution: int, step: int = DEFAULT_STEP, min_reso: int | None = None,
                 max_reso: int | None = None) -> list[Size]:
    """Every (width, height) with sides in [min_reso, max_reso], multiples of `step`: for each
    short side, the longest side whose area stays within resolution**2 (kohya's rule), both ways.
    Defaults: sides from resolution/2 to resolution*2. A step that does not divide the
    resolution is reduced to their greatest common divisor (for previews; training configs
    must have a step that divides it)."""
    step = math.gcd(step, resolution) or step
    area = resolution * resolution
    lo = max(step, min_reso if min_reso is not None else resolution // 2)
    hi = max_reso if max_reso is not None else resolution * 2
    out: set[Size] = set()
    for width in range(math.ceil(lo / step) * step, resolution + 1, step):
        height = (area // width) // step * step
        if lo <= height <= hi:
            out |= {(width, height), (height, width)}  # both orientations of each shape
    out.add((resolution, resolution))
    return sorted(out, key=lambda s: (s[0] / s[1], s[0]))


@dataclass(frozen=True)
class Placement:
    """Where one image lands: its bucket, the size it is resized to, the upscale that took."""

    bucket: Size
    resized: Size
    scale: float

    @property
    def fixed(self) -> bool:
        """True when the resized image is exactly the bucket: every crop is the same crop."""
        return self.resized == self.bucket

    def crop(self, center: bool, rng: Any = None) -> tuple[int, int]:
        """(left, top) of the bucket inside the resized image: centred, or drawn from `rng`."""
        dx, dy = self.resized[0] - self.bucket[0], self.resized[1] - self.bucket[1]
        if center or rng is None:
            return dx // 2, dy // 2
        return rng.randint(0, dx), rng.randint(0, dy)


def place(width: int, height: int, buckets: Sequence[Size]) -> Placement:
    """The bucket nearest the image's aspect ratio (log scale; ties go to the larger area),
    and the smallest resize that covers it."""
    aspect = math.log(width / height)
    bucket = min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))
    scale = max(bucket[0] / width, bucket[1] / height)
    resized = (max(bucket[0], round(width * scale)), max(bucket[1], round(height * scale)))
    return Placement(bucket, resized, scale)


def too_small(placement: Placement, max_upscale: float) -> str | None:
    """The reason an image may not be used at this resolution, or None."""
    if placement.scale > max_upscale + 1e-9:
        b = placement.bucket
        return (f"too small for bucket {b[0]}x{b[1]}: needs {placement.scale:.2f}x upscale, max_upscale is "
                f"{max_upscale:g} (lower resolution or raise max_upscale)")
    return None


def render(image: Any, placement: Placement, left_top: tuple[int, int], flip: bool = False) -> Any:
    """What the model sees of a picture without a crop box: resize, crop the bucket at `left_top`,
    maybe mirror (view.View.render, which also takes the subject crop: view.preview)."""
    from sdstudio.core.training.view import View

    return View(image.size, None, placement.resized, left_top, placement.bucket, placement.scale, flip).render(image)


class BucketBatches:
    """Batches of `batch_size` items of one bucket, in a fixed order per (seed, epoch).

    Each epoch shuffles every bucket's items, cuts them into batches (a bucket's last batch is
    filled up from the start of its own shuffle, so no batch mixes shapes), then shuffles the
    batches. Batch `index` of the endless stream is a function of (seed, index) alone.
    """

    def __init__(self, buckets: Iterable[Size], batch_size: int) -> None:
        groups: dict[Size, list[int]] = {}
        for i, b in enumerate(buckets):
            groups.setdefault(b, []).append(i)
        self.groups = [groups[b] for b in sorted(groups)]
        self.batch_size = batch_size
        self.per_epoch = sum(math.ceil(len(g) / batch_size) for g in self.groups)
        self._epochs: dict[tuple[int, int], list[list[int]]] = {}

    def _epoch(self, seed: int, epoch: int) -> list[list[int]]:
        import torch

        key = (seed, epoch)
        if key not in self._epochs:
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            batches: list[list[int]] = []
            for items in self.groups:
                order = [items[i] for i in torch.randperm(len(items), generator=g).tolist()]
                for start in range(0, len(order), self.batch_size):
                    chunk = order[start:start + self.batch_size]
                    while len(chunk) < self.batch_size:
                        chunk += order[: self.batch_size - len(chunk)]
                    batches.append(chunk)
            perm = torch.randperm(len(batches), generator=g).tolist()
            if len(self._epochs) > 4:
                self._epochs.clear()
            self._epochs[key] = [batches[i] for i in perm]
        return self._epochs[key]

    def batch(self, index: int, seed: int) -> list[int]:
        """Item indices of batch `index` (all from one bucket)."""
        epoch, offset = divmod(index, self.per_epoch)
        return self._epoch(seed, epoch)[offset]


def bucket_counts(placements: Iterable[Placement | None]) -> list[tuple[Size, int]]:
    """(bucket, number of images) for every bucket in use, tall to wide."""
    counts: dict[Size, int] = {}
    for p in placements:
        if p is not None:
            counts[p.bucket] = counts.get(p.bucket, 0) + 1
    return sorted(counts.items(), key=lambda kv: (kv[0][0] / kv[0][1], kv[0][0]))


def format_table(placements: Sequence[Placement | None], resolution: int, step: int, max_upscale: float,
                 rejected: int = 0) -> str:
    """The bucket summary `sdstudio dataset check` prints."""
    lines = [f"buckets at {resolution} px ({step} px steps, max upscale {max_upscale:g}x):",
             f"  {'bucket':>11}  {'aspect':>6}  images"]
    for (w, h), n in bucket_counts(placements):
        lines.append(f"  {f'{w}x{h}':>11}  {w / h:6.2f}  {n}")
    if rejected:
        lines.append(f"  {'too small':>11}  {'':>6}  {rejected}")
    return "\n".join(lines)


def config_buckets(cfg: Any) -> list[Size]:
    """The buckets a training config asks for (`enable_bucket`, `bucket_reso_steps`, ...)."""
    return bucket_sizes(cfg.resolution, cfg.bucket_reso_steps, cfg.min_bucket_reso, cfg.max_bucket_reso)


def place_files(files: Iterable[Any], resolution: int, step: int = DEFAULT_STEP,
                max_upscale: float = DEFAULT_MAX_UPSCALE) -> dict[str, tuple[Placement, str | None]]:
    """Each usable dataset file's (placement, reason it is too small or None), by file name."""
    sizes = bucket_sizes(resolution, step)
    out: dict[str, tuple[Placement, str | None]] = {}
    for f in files:
        if getattr(f, "usable", True) and f.width and f.height:
            p = place(f.width, f.height, sizes)
            out[f.name] = (p, too_small(p, max_upscale))
    return out


def bucket_line(files: Iterable[Any], resolution: int) -> str:
    """Images per bucket in one line (the Dataset screen's summary)."""
    placed = place_files(files, resolution)
    counts = bucket_counts(p for p, why in placed.values() if not why)
    small = sum(why is not None for _, why in placed.values())
    text = f"buckets at {resolution} px: " + (", ".join(f"{w}x{h} {n}" for (w, h), n in counts) or "none")
    return text + (f", too small {small}" if small else "")
