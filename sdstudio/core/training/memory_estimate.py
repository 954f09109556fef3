"""How much memory a run will need, before it starts: peak accelerator memory, peak host RAM, and
the disk each checkpoint takes, from the base model's parameter counts (model_sizes.py, headers
only) and the config. Instant, no torch: the Train form recomputes it as options change.

Formulas (bytes; P = parameters of what trains, P_f = of what is frozen; fp32 = 4, fp16/bf16 = 2):
- frozen weights: P_f x weight dtype (mixed_precision), the VAE always fp32. With cached latents and
  text (cache_latents, text encoders frozen) the VAE and text encoders leave the GPU after caching
  (fast_path), so they count on the host instead.
- LoRA: adapters r x (in + out) per adapted layer, fp32: weights 4 + gradients 4 + optimizer.
- full: weights P x 4 (master_weights = "fp32") or x 2 ("bf16", stochastic rounding); gradients the
  same size, or with fused_backward only the largest tensor's (each parameter is stepped in its
  gradient hook and its gradient freed); EMA a second fp32 copy, on the host with ema_on_cpu.
- optimizer states per trained parameter: adamw 2 moments in the weights' dtype; adamw8bit 2 x 1
  byte (+ 2 fp32 block statistics per 2048, tensors under 4096 elements stay 32-bit); adafactor
  factored second moments, the row and column sums of each matrix (1-D tensors whole), fp32.
- activations: batch x a count of the UNet's saved elements per sample (each resnet and
  transformer layer at its channels x latent pixels; SDPA's fused attention keeps no maps) x the
  compute dtype; gradient checkpointing keeps only each block's input plus one block's
  recomputation. The factors were fitted to measured CPU peaks (eight UNet sizes and resolutions,
  fp32); GPU figures are owed a measurement. Not counted: a trained text encoder's activations and
  validation sampling (an inference pass, smaller than a training step).
- host: the process baseline (Python + torch + diffusers; measured at run start by the trainer,
  else BASELINE_CPU) + while loading, every component once in its dtype; while training, the
  latent and text caches, a host EMA and offloaded encoders. On a CPU the accelerator is the host:
  everything above adds up in RSS, plus RUNTIME_CPU (torch's kernels and allocator caches after
  the first step, measured).
- checkpoint: LoRA: the adapters twice (the diffusers file and the peft copy in state/) + optimizer
  states. Full: the trained weights in their dtype + EMA (fp32) + optimizer states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdstudio.core.training.model_sizes import ModelSizes

GIB = 2**30
MIB = 2**20
# A fresh `python -m sdstudio train` after importing torch, diffusers, transformers, accelerate and
# peft (CPU torch 2.x on Linux x86-64, measured: benchmarks/memory_estimate.py --baseline); the
# trainer replaces it with its own process's RSS when it starts.
BASELINE_CPU = 440 * MIB
# What a CPU process grows by on its first training step beyond tensors: kernel code pages, the
# allocator's and thread pools' caches (measured on the tiny models, where tensors are a few MiB).
RUNTIME_CPU = 70 * MIB
# Fitted to measured CPU activation peaks (fp32, the diffusers UNet, 8 configurations within -25/+26 %):
# saved elements per channel x pixel for each resnet / transformer layer, and per checkpointed block.
# A term for attention maps fitted to ~0: SDPA's fused kernels keep none.
RESNET_FACTOR, TRANSFORMER_FACTOR, CHECKPOINT_FACTOR = 9.6, 10.7, 3.5
TEXT_TOKENS = 77


@dataclass
class MemoryEstimate:
    """Bytes by where they live; `parts` lists each term (name, bytes, "accelerator" | "host")."""

    device: str  # "cuda" or "cpu" (then the accelerator is the host: `accelerator_bytes` is None)
    accelerator_bytes: int | None
    host_bytes: int
    checkpoint_bytes: int
    parts: list[tuple[str, int, str]] = field(default_factory=list)
    source: str = "files"
    baseline_measured: bool = False

    def line(self) -> str:
        """The one log line printed before training."""
        acc = (f"accelerator ~{gib(self.accelerator_bytes)}, " if self.accelerator_bytes is not None
               else "no accelerator (CPU: all in host RAM), ")
        top = sorted((p for p in self.parts if p[1] > 0), key=lambda p: -p[1])[:3]
        detail = ", ".join(f"{name} {gib(size)}" for name, size, _ in top)
        sizes = "" if self.source == "files" else f"; {self.source}"
        return (f"memory estimate: {acc}host ~{gib(self.host_bytes)}, each checkpoint ~{gib(self.checkpoint_bytes)} "
                f"(largest: {detail}{sizes})")

    def short(self) -> str:
        """One compact line for the Train form (about 40 columns)."""
        if self.accelerator_bytes is None:
            return f"Memory est.: RAM ~{_short(self.host_bytes)} (CPU) · ckpt ~{_short(self.checkpoint_bytes)}"
        return (f"Memory est.: GPU ~{_short(self.accelerator_bytes)} · RAM ~{_short(self.host_bytes)} · "
                f"ckpt ~{_short(self.checkpoint_bytes)}")

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "accelerator_bytes": self.accelerator_bytes, "host_bytes": self.host_bytes,
                "checkpoint_bytes": self.checkpoint_bytes, "source": self.source,
                "baseline_measured": self.baseline_measured,
                "parts": [{"name": n, "bytes": b, "where": w} for n, b, w in self.parts]}


def gib(n: int | float | None) -> str:
    if n is None:
        return "-"
    return f"{n / GIB:.2f} GiB" if n >= 0.1 * GIB else f"{n / MIB:.0f} MiB"


def _short(n: int) -> str:
    return f"{n / GIB:.1f}G" if n >= 0.1 * GIB else f"{max(n / MIB, 1):.0f}M"


def likely_device() -> str:
    """"cuda" when this machine has an NVIDIA GPU, else "cpu", without importing torch unless it is
    already imported (the Train form asks on every change)."""
    import os
    import sys

    if "torch" in sys.modules:
        return "cuda" if sys.modules["torch"].cuda.is_available() else "cpu"
    return "cuda" if os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia/version") else "cpu"


def _dtype_bytes(mixed_precision: str) -> int:
    return 2 if mixed_precision in ("fp16", "bf16") else 4


def _as_list(value: Any, n: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * n


def activation_elements(unet_config: dict[str, Any], height: int, width: int, checkpointing: bool) -> float:
    """Saved elements of one sample's UNet forward at a latent of height x width (see the docstring)."""
    channels = list(unet_config.get("block_out_channels", [320, 640, 1280, 1280]))
    n = len(channels)
    down = list(unet_config.get("down_block_types", ["CrossAttnDownBlock2D"] * n))
    layers = int(unet_config.get("layers_per_block", 2))
    depth = _as_list(unet_config.get("transformer_layers_per_block", 1), n)
    total, blocks, largest = 0.0, 0.0, 0.0
    for i, (c, kind) in enumerate(zip(channels, down)):
        pixels = (height / 2**i) * (width / 2**i)
        resnets = 2 * layers + 1 + (2 if i == n - 1 else 0)  # down, up (one more), and the mid block
        attn = "CrossAttn" in kind or i == n - 1  # the mid block attends at the lowest level
        transformers = (2 * layers + 1 if "CrossAttn" in kind else 0) + (1 if i == n - 1 else 0)
        t_layers = transformers * depth[i] if attn else 0
        total += c * pixels * (RESNET_FACTOR * resnets + TRANSFORMER_FACTOR * t_layers)
        blocks += c * pixels * (resnets + t_layers)
        largest = max(largest, c * pixels * max(RESNET_FACTOR, TRANSFORMER_FACTOR if t_layers else 0))
    return CHECKPOINT_FACTOR * blocks + largest if checkpointing else total


def _lora_params(sizes: ModelSizes, names: tuple[str, ...], rank: int) -> int:
    return sum(rank * (i + o) for name in names for i, o in sizes.components[name].lora_shapes
               if name in sizes.components)


def optimizer_bytes(optimizer: str, shapes: list[tuple[int, ...]], weight_bytes: int) -> int:
    """The optimizer's state for parameters of these shapes (see the module docstring)."""
    import math

    total = 0
    for shape in shapes:
        numel = math.prod(shape) if shape else 1
        if optimizer == "adamw8bit":
            total += 2 * numel + 8 * (numel // 2048 + 1) if numel >= 4096 else 8 * numel
        elif optimizer == "adafactor":
            total += 4 * (numel // shape[-1] + numel // shape[-2]) if len(shape) >= 2 else 4 * numel
        else:
            total += 2 * weight_bytes * numel
    return total


def estimate(cfg: Any, sizes: ModelSizes, device: str = "cuda", n_images: int | None = None,
             baseline_bytes: int | None = None, n_captions: int | None = None) -> MemoryEstimate:
    """Peak accelerator memory, peak host RAM and checkpoint size of a run of `cfg` on `sizes`.

    `device`: "cuda" (accelerator + host) or "cpu" (one number: the process's peak RSS).
    `n_images`: training images (with class images); None counts none for the caches."""
    wbytes = _dtype_bytes(cfg.mixed_precision)
    cpu = device != "cuda"
    acc = "host" if cpu else "accelerator"
    images = int(n_images or 0)
    trained = ("unet", *(sizes.text_encoders if cfg.train_text_encoder else ()))
    frozen_text = () if cfg.train_text_encoder else sizes.text_encoders
    caches_text = cfg.cache_latents and not cfg.train_text_encoder
    offload = not cpu and cfg.fast_path and caches_text and cfg.cache_latents  # frozen modules leave the GPU
    parts: list[tuple[str, int, str]] = []
    encoders_where = "host" if offload else acc
    parts.append(("vae", 4 * sizes.params("vae"), encoders_where))
    for name in frozen_text:
        parts.append((name, wbytes * sizes.params(name), encoders_where))
    if cfg.training_method == "full":
        master = 2 if cfg.master_weights == "bf16" else 4
        shapes = [s for name in trained for s in sizes.components[name].shapes]
        params = sum(sizes.params(name) for name in trained)
        parts.append(("weights (trained)", master * params, acc))
        largest = max(sizes.components[name].largest for name in trained)
        parts.append(("gradients", master * (largest if cfg.fused_backward else params), acc))
        opt = optimizer_bytes(cfg.resolved_optimizer, shapes, master)
        parts.append((f"{cfg.resolved_optimizer} state", opt, acc))
        if cfg.use_ema:
            parts.append(("EMA (fp32)", 4 * params, "host" if cfg.ema_on_cpu or cpu else "accelerator"))
        ckpt = master * params + opt + (4 * params if cfg.use_ema else 0)
    else:
        for name in trained:
            parts.append((f"{name} (frozen)", wbytes * sizes.params(name), acc))
        lora = _lora_params(sizes, trained, cfg.rank)
        opt = optimizer_bytes(cfg.resolved_optimizer, [(cfg.rank, max(lora // cfg.rank, 1))], 4)
        parts.append(("LoRA weights + gradients", 8 * lora, acc))
        parts.append((f"{cfg.resolved_optimizer} state", opt, acc))
        ckpt = 8 * lora + opt
    latent = max(cfg.resolution // sizes.vae_scale, 1)
    per_sample = activation_elements(sizes.unet_config, latent, latent, cfg.gradient_checkpointing)
    act_bytes = 4 if cpu or cfg.mixed_precision == "no" else 2
    parts.append(("activations", int(cfg.train_batch_size * per_sample * act_bytes), acc))
    flips = 2 if cfg.random_flip else 1
    latents = images * flips * 2 * sizes.latent_channels * latent * latent * 4 if cfg.cache_latents else 0
    hidden = sum(sizes.components[n].hidden for n in sizes.text_encoders)
    captions = images if n_captions is None else n_captions
    text = captions * TEXT_TOKENS * hidden * wbytes if caches_text else 0
    parts.append(("latent + text caches", latents + text, "host"))
    measured = baseline_bytes is not None
    baseline = int(baseline_bytes if measured else BASELINE_CPU)
    parts.append(("process baseline" if measured else "process baseline (typical)", baseline, "host"))
    if cpu:
        parts.append(("torch runtime", RUNTIME_CPU, "host"))
        host = sum(b for _, b, _ in parts)
        accelerator = None
    else:
        on_host = sum(b for _, b, w in parts if w == "host")
        loading = baseline + sum(b for n, b, w in parts if n in ("vae", *sizes.text_encoders, "weights (trained)")
                                 or n.endswith("(frozen)"))
        host = max(on_host, loading)
        accelerator = sum(b for _, b, w in parts if w == "accelerator")
    return MemoryEstimate(device, accelerator, host, int(ckpt), parts, sizes.source, measured)


def dataset_images(cfg: Any) -> int:
    """Training images (+ class images with prior preservation), counted by name: nothing decoded."""
    from sdstudio.core.dataset import image_files

    folder = cfg.train_data_dir if cfg.resolved_method == "text2image" else cfg.instance_data_dir
    try:
        count = len(image_files(folder)) if folder else 0
    except OSError:
        count = 0
    return count + (cfg.num_class_images if cfg.with_prior_preservation else 0)


def estimate_config(cfg: Any, device: str = "cuda", baseline_bytes: int | None = None) -> MemoryEstimate:
    """The estimate for a config as the CLI and the Train form see it: the base model's headers
    and the dataset's file count (ModelError when the base model cannot be found)."""
    from sdstudio.core.models import resolve_base_model
    from sdstudio.core.training.model_sizes import model_sizes

    sizes = model_sizes(resolve_base_model(cfg.pretrained_model_name_or_path))
    return estimate(cfg, sizes, device, dataset_images(cfg), baseline_bytes)


def breakdown(est: MemoryEstimate) -> list[str]:
    """The estimate's terms, one line each, largest first (for `sdstudio train --estimate`)."""
    where = {"accelerator": "accelerator", "host": "host"}
    return [f"  {name:<28} {gib(size):>10}  {where[w]}" for name, size, w in sorted(est.parts, key=lambda p: -p[1])]
