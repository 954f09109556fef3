"""Validation samples at fixed prompts and seeds, written into the run directory.

All seeds of one prompt go through the pipeline as one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.progress import Progress
from sdstudio.core.runs.run_dir import RunDir


def sampling_on(cfg: TrainConfig) -> bool:
    """Sampling is turned off by num_validation_images = 0 or validation_steps = 0, and only so:
    with no validation_prompts it samples the prompts below."""
    return cfg.num_validation_images > 0 and cfg.validation_steps > 0


def validation_prompts(cfg: TrainConfig, captions: list[str]) -> list[str]:
    """The configured prompts, else the instance (and class) prompt, else the first two captions."""
    if cfg.validation_prompts:
        return list(cfg.validation_prompts)
    if cfg.resolved_method == "dreambooth":
        prompts = [cfg.instance_prompt or ""]
        if cfg.with_prior_preservation and cfg.class_prompt:
            prompts.append(cfg.class_prompt)
        return prompts
    seen: list[str] = []
    for c in captions:
        if c not in seen:
            seen.append(c)
        if len(seen) == 2:
            break
    return seen


def validation_seeds(cfg: TrainConfig) -> list[int]:
    return [cfg.seed + i for i in range(cfg.num_validation_images)]


def make_pipeline(base_pipe: Any, unet: Any, text_encoder: Any, vae: Any, text_encoder_2: Any = None) -> Any:
    """A pipeline sharing the training modules (no copies), with the model's own sampler
    (an SDXL pipeline when there is a second text encoder)."""
    from diffusers import StableDiffusionPipeline

    if text_encoder_2 is not None:
        from sdstudio.core.training.sdxl import make_pipeline as make_sdxl_pipeline

        return make_sdxl_pipeline(base_pipe, unet, text_encoder, text_encoder_2, vae)

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=base_pipe.tokenizer, unet=unet,
        scheduler=base_pipe.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe: Any, run: RunDir, step: int, cfg: TrainConfig, prompts: list[str], device: Any,
           autocast_dtype: Any = None, check: Callable[[], None] = lambda: None) -> list[Path]:
    """Generate every (prompt, seed) image for `step`; returns the written paths.
    `check` is called at every denoising step (it raises to stop).

    With mixed precision the UNet and text encoders run under autocast, but the VAE decodes
    outside it in fp32: SD and SDXL VAEs overflow in fp16 (black or NaN pictures)."""
    import contextlib

    import torch

    from sdstudio.core.training.class_images import step_check

    seeds = validation_seeds(cfg)
    paths: list[Path] = []
    progress = Progress("sampling", len(prompts) * len(seeds), "images")
    steps = max(1, cfg.validation_num_inference_steps)
    was_training = pipe.unet.training
    pipe.unet.eval()
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    try:
        with torch.no_grad(), ctx:
            for pi, prompt in enumerate(prompts):
                gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
                out = pipe([prompt] * len(seeds), height=cfg.resolution, width=cfg.resolution,
                           num_inference_steps=cfg.validation_num_inference_steps,
                           guidance_scale=cfg.validation_guidance_scale, generator=gens,
                           callback_on_step_end=step_check(check, lambda k: progress.update(
                               len(paths), fraction=(pi + k / steps) / len(prompts))),
                           output_type="latent" if autocast_dtype is not None else "pil")
                images = decode_fp32(pipe, out.images, device) if autocast_dtype is not None else out.images
                for seed, image in zip(seeds, images):
                    paths.append(run.add_sample(step, pi, prompt, seed, image))
                progress.update(len(paths))
    finally:
        if was_training:
            pipe.unet.train()
    return paths


def decode_fp32(pipe: Any, latents: Any, device: Any) -> list[Any]:
    """Latents -> PIL images with the VAE in fp32 and autocast off."""
    import torch

    vae = pipe.vae
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    with torch.autocast(device.type, enabled=False):
        pixels = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor + shift, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels.float(), output_type="pil")
