"""The models of one training run, built in named steps: load, adapters (LoRA) or unfrozen
weights (full: core/full/trainable.py), optimizer and scheduler, prepare, caches, compile. The
trainer owns the lifecycle; this owns what trains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.models import BaseModel, load_pipeline
from sdstudio.core.progress import Progress
from sdstudio.core.full import optimizers
from sdstudio.core.training import checkpoint
from sdstudio.core.training.examples import Example, ExampleSource, class_examples
from sdstudio.core.training.loss import StepLoss


class TrainingModels:
    """The pipeline, the prepared models, optimizer, LR scheduler, caches and step loss."""

    def __init__(self, cfg: TrainConfig, accelerator: Any, weight_dtype: Any, base: BaseModel, examples: list[Example],
                 counters: checkpoint.TrainerCounters, log: Callable[..., None], check: Callable[[], None]) -> None:
        self.cfg = cfg
        self.accelerator = accelerator
        self.device = accelerator.device
        self.weight_dtype = weight_dtype
        self.base = base
        self.examples = examples
        self.counters = counters  # registered for checkpointing with the LR scheduler
        self.log = log
        self.check = check  # raises StopRequested when a stop was requested
        self.class_examples: list[Example] = []
        self.pipe: Any = None
        self.noise_scheduler: Any = None
        self.unet: Any = None  # the prepared (and possibly compiled) UNet
        self.text_encoder: Any = None  # prepared when it is trained
        self.text_encoder_2: Any = None  # SDXL's second text encoder (prepared when trained), else None
        self.params: list[Any] = []
        self.optimizer: Any = None
        self.lr_scheduler: Any = None
        self.source: ExampleSource | None = None
        self.loss: StepLoss | None = None
        self.channels_last = False
        self.offloaded = False
        self.full: Any = None  # training_method = "full": core/full/trainable.FullTraining
        if cfg.full:
            from sdstudio.core.full.trainable import FullTraining

            self.full = FullTraining(self)

    def build(self) -> None:
        """Run the setup steps in order, looking for a stop between and inside them."""
        steps = (self._load, self._unfreeze if self.full else self._add_adapters, self._make_optimizer_and_scheduler, self._prepare,
                 self._build_caches, self._compile)
        progress = Progress("loading", len(steps))
        for done, setup_step in enumerate(steps):
            self.check()
            progress.update(done, detail=setup_step.__name__.strip("_").replace("_", " "))
            setup_step()
        progress.finish()
        self.check()

    def _load(self) -> None:
        """The base pipeline, frozen; class images made if missing; models on the device."""
        import torch
        from diffusers import DDPMScheduler

        cfg, acc = self.cfg, self.accelerator
        # each component loaded in its final dtype (the VAE in fp32, see sdxl.py): loading in fp32 and
        # casting afterwards needed the whole model in fp32 in host memory first (SDXL: about 13 GB)
        # a full run loads in its trained weights' dtype (fp32 master weights: never rounded through
        # bf16 first); the frozen text encoders then take the run's dtype
        load_dtype = self.weight_dtype
        if self.full:
            from sdstudio.core.full.trainable import master_dtype

            load_dtype = master_dtype(cfg)
        self.pipe = load_pipeline(self.base, torch_dtype=load_dtype, vae=cfg.pretrained_vae_model_name_or_path,
                                  vae_dtype=torch.float32)
        self.check()
        self.noise_scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        self.text_encoder_2 = getattr(self.pipe, "text_encoder_2", None)  # SDXL, else None
        for module in (self.pipe.unet, self.pipe.vae, *self.text_encoders):
            module.requires_grad_(False)
        if load_dtype != self.weight_dtype and not cfg.train_text_encoder:
            for module in self.text_encoders:
                module.to(dtype=self.weight_dtype)
        if cfg.with_prior_preservation:
            from sdstudio.core.training.class_images import ensure_class_images
            from sdstudio.core.training.validation import decode_fp32

            if self.accelerator.is_main_process:
                self.pipe.to(self.device)
                ensure_class_images(cfg, self.pipe, self.log, self.check, decode_fp32)
            acc.wait_for_everyone()
            self.class_examples = class_examples(cfg)
        for module in (self.pipe.vae, *self.text_encoders, self.pipe.unet):
            module.to(self.device)

    def _add_adapters(self) -> None:
        """Seeded LoRA adapters (trained in fp32 whatever the base dtype), checkpointing, CUDA layout."""
        import torch
        from diffusers.training_utils import cast_training_params

        cfg = self.cfg
        unet = self.pipe.unet
        torch.manual_seed(cfg.seed)  # LoRA init is part of the run's determinism
        unet.add_adapter(checkpoint.lora_config(cfg.rank, cfg.effective_alpha, checkpoint.UNET_TARGETS))
        trained = [unet]
        if cfg.train_text_encoder:  # SDXL: both encoders, as in the diffusers SDXL script
            for text_encoder in self.text_encoders:
                text_encoder.add_adapter(checkpoint.lora_config(cfg.rank, cfg.effective_alpha,
                                                                self._text_encoder_targets(text_encoder)))
                trained.append(text_encoder)
        cast_training_params(trained, dtype=torch.float32)
        self.params = [p for m in trained for p in m.parameters() if p.requires_grad]
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            if cfg.train_text_encoder:
                for text_encoder in self.text_encoders:
                    text_encoder.gradient_checkpointing_enable()
        self.channels_last = self.cuda_fast
        if self.cuda_fast:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            unet.to(memory_format=torch.channels_last)

    def _unfreeze(self) -> None:
        """Full fine-tuning: every weight of what trains (core/full/trainable.py); CUDA layout."""
        import torch

        self.params = self.full.make_trainable()
        self.channels_last = self.cuda_fast
        if self.cuda_fast:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            self.pipe.unet.to(memory_format=torch.channels_last)

    def _text_encoder_targets(self, text_encoder: Any) -> list[str]:
        """SD: every attention projection. SDXL: only layers whose output reaches the UNet (see
        sdxl.text_encoder_targets): a LoRA layer without a gradient stops DDP at the next step."""
        if self.text_encoder_2 is None:
            return checkpoint.TEXT_ENCODER_TARGETS
        from sdstudio.core.training.sdxl import text_encoder_targets

        return text_encoder_targets(text_encoder, pooled=text_encoder is self.text_encoder_2)

    @property
    def text_encoders(self) -> tuple[Any, ...]:
        """The base pipeline's text encoders: one, or SDXL's two."""
        return tuple(m for m in (self.pipe.text_encoder, getattr(self.pipe, "text_encoder_2", None)) if m is not None)

    @property
    def cuda_fast(self) -> bool:
        return bool(self.cfg.fast_path and self.device.type == "cuda")

    def _make_optimizer_and_scheduler(self) -> None:
        from diffusers.optimization import get_scheduler

        cfg = self.cfg
        scale = cfg.images_per_step * self.accelerator.num_processes if cfg.scale_lr else 1
        lr = cfg.learning_rate * scale
        if self.full:
            self.optimizer, scheduled = self.full.make_optimizer(lr, scale, fused_kernel=self.cuda_fast)
        else:
            self.optimizer = scheduled = optimizers.build(cfg, self.params, lr, fused=self.cuda_fast)
        self.lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer=scheduled, num_warmup_steps=cfg.lr_warmup_steps,
                                          num_training_steps=cfg.max_train_steps)

    def _prepare(self) -> None:
        """Accelerate wraps what trains (DDP, autocast, loss scaling) and checkpoints the rest: the LR
        scheduler is registered rather than prepared, so it steps once per optimizer step."""
        acc = self.accelerator
        trained_te = self.cfg.train_text_encoder
        models = [self.pipe.unet, *(self.text_encoders if trained_te else ())]
        if self.optimizer is not None:
            *prepared, self.optimizer = acc.prepare(*models, self.optimizer)
        else:  # one optimizer per parameter (core/full/fused_backward.py): checkpointed by after_prepare
            prepared = list(acc.prepare(*models)) if len(models) > 1 else [acc.prepare(*models)]
        self.unet = prepared[0]
        self.text_encoder = prepared[1] if trained_te else self.pipe.text_encoder
        if self.text_encoder_2 is not None:
            self.text_encoder_2 = prepared[2] if trained_te else self.pipe.text_encoder_2
        acc.register_for_checkpointing(self.lr_scheduler, self.counters)
        if self.full:
            self.full.after_prepare(acc)
        else:
            checkpoint.install_hooks(acc, self.plain)

    def trained(self) -> dict[str, Any]:
        """The trained models as prepared (DDP-wrapped with several processes), by component name:
        the UNet, and the text encoders (SDXL: both) when they are trained."""
        trained = {"unet": self.unet}
        if self.cfg.train_text_encoder:
            trained["text_encoder"] = self.text_encoder
            if self.text_encoder_2 is not None:
                trained["text_encoder_2"] = self.text_encoder_2
        return trained

    def plain(self) -> dict[str, Any]:
        """The trained models by component name, without DDP or compile wrappers (plain keys)."""
        return {name: checkpoint.plain(self.accelerator, model) for name, model in self.trained().items()}

    def _build_caches(self) -> None:
        """Latents and text embeddings computed once; frozen modules off the GPU when both are cached.
        Prompts are encoded by the prepared text encoder, so a trained one's gradients are all-reduced."""
        import torch

        vae = self.pipe.vae
        everything = self.examples + self.class_examples
        fixed = all(ex.fixed_crop for ex in everything)
        if self.text_encoder_2 is not None:  # SDXL: two encoders, pooled text, size/crop time ids
            from sdstudio.core.training.sdxl import SdxlSource

            self.source = SdxlSource(self.cfg, vae, (self.text_encoder, self.text_encoder_2),
                                     (self.pipe.tokenizer, self.pipe.tokenizer_2), self.device, self.weight_dtype, fixed)
        else:
            self.source = ExampleSource(self.cfg, vae, self.text_encoder, self.pipe.tokenizer, self.device,
                                        self.weight_dtype, all_square=fixed)
        if self.source.cache_latents:
            self.log(f"caching latents of {len(everything)} images")
        self.source.precompute(everything, self.check)
        self.offloaded = self.cuda_fast and self.source.frozen_modules_idle
        if self.offloaded:  # their outputs cached: free their GPU memory until sampling
            for module in self.frozen_modules:
                module.to("cpu")
            torch.cuda.empty_cache()

    def _compile(self) -> None:
        """torch.compile the UNet (backend: $SDSTUDIO_COMPILE_BACKEND, default inductor; `eager`
        or `aot_eager` to debug); build the step loss."""
        import os

        import torch

        cfg, acc = self.cfg, self.accelerator
        if cfg.torch_compile:
            self.unet = torch.compile(self.unet, backend=os.environ.get("SDSTUDIO_COMPILE_BACKEND", "inductor"))
        self.loss = StepLoss(cfg, self.source, self.unet, self.noise_scheduler, self.device, self.weight_dtype,
                             self.channels_last, acc.num_processes, acc.process_index, self.examples,
                             self.class_examples)

    def update(self, clip: Callable[[], None]) -> None:
        """The optimizer step after the backward: `clip` the gradients, step, schedule, zero."""
        if self.full:
            self.full.update(self.accelerator, clip)
            return
        clip()
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def evaluated(self) -> Any:
        """Within: the weights samples and the validation loss see (a full run's EMA, if any)."""
        return self.full.evaluated() if self.full else contextlib.nullcontext()

    @contextlib.contextmanager
    def sampling_pipeline(self) -> Iterator[Any]:
        """A pipeline over the training modules (plain, no copies); offloaded modules come back
        to the device for the duration."""
        from sdstudio.core.training.validation import make_pipeline

        unet = checkpoint.plain(self.accelerator, self.unet)
        text_encoder = checkpoint.plain(self.accelerator, self.text_encoder)
        text_encoder_2 = checkpoint.plain(self.accelerator, self.text_encoder_2) if self.text_encoder_2 is not None else None
        for module in self.frozen_modules if self.offloaded else ():
            module.to(self.device)
        try:
            yield make_pipeline(self.pipe, unet, text_encoder, self.pipe.vae, text_encoder_2)
        finally:
            for module in self.frozen_modules if self.offloaded else ():
                module.to("cpu")

    @property
    def frozen_modules(self) -> tuple[Any, ...]:
        """The VAE and text encoders (offloaded from the GPU while their outputs are cached)."""
        return (self.pipe.vae, *self.text_encoders)
