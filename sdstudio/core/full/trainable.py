"""What a full fine-tune (`training_method = "full"`) trains and how it steps, beside the LoRA
path of training/setup.py: every weight of the UNet and, with `train_text_encoder`, of the text
encoders (SDXL: both) at `text_encoder_lr`; the optimizer (one for all, or one per parameter for
fused backward and bf16 weights); the EMA; the checkpoint's model/ and ema/ folders.

Precision of the trained weights (`master_weights`): fp32, with the forward under autocast when
`mixed_precision` asks for it (fp16 also with loss scaling), or bf16 with stochastic rounding
(see stochastic_rounding.py). Frozen modules keep `mixed_precision`'s dtype, the VAE fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sdstudio.core.full import optimizers, weights
from sdstudio.core.full.layout import has_ema, is_full_checkpoint, model_dir


def master_dtype(cfg: Any) -> Any:
    import torch

    return torch.bfloat16 if cfg.master_weights == "bf16" else torch.float32


def unused_parameters(text_encoder: Any, is_first_of_two: bool) -> list[Any]:
    """Weights whose output never reaches the UNet, left frozen (DDP stops at the next step on a
    trained weight without a gradient): SDXL reads CLIP-L's penultimate hidden states, so its last
    layer and final layer norm are computed but unused (bigG's pooled output uses all of it)."""
    if not is_first_of_two:
        return []
    text_model = getattr(text_encoder, "text_model", text_encoder)  # transformers 5 dropped the level
    last = text_model.encoder.layers[-1]
    return [*last.parameters(), *text_model.final_layer_norm.parameters()]


class FullTraining:
    """The full fine-tune's part of a run's TrainingModels (`models`)."""

    def __init__(self, models: Any) -> None:
        self.models = models
        self.cfg = models.cfg
        self.param_optimizers: Any = None  # fused_backward or bf16 weights: one optimizer per parameter
        self.ema: Any = None

    # setup
    def make_trainable(self) -> list[Any]:
        """Unfreeze what trains, in its master dtype; gradient checkpointing. Returns the parameters."""
        m, cfg = self.models, self.cfg
        dtype = master_dtype(cfg)
        trained = {"unet": m.pipe.unet}
        if cfg.train_text_encoder:
            trained["text_encoder"] = m.pipe.text_encoder
            if m.text_encoder_2 is not None:
                trained["text_encoder_2"] = m.text_encoder_2
        for name, module in trained.items():
            module.to(dtype=dtype)
            module.requires_grad_(True)
            if name == "text_encoder":
                for p in unused_parameters(module, m.text_encoder_2 is not None):
                    p.requires_grad_(False)
            module.train()
        if cfg.gradient_checkpointing:
            m.pipe.unet.enable_gradient_checkpointing()
            for name in ("text_encoder", "text_encoder_2"):
                if name in trained:
                    trained[name].gradient_checkpointing_enable()
        self._unet_params = [p for p in m.pipe.unet.parameters() if p.requires_grad]
        self._te_params = [p for name, mod in trained.items() if name != "unet" for p in mod.parameters() if p.requires_grad]
        return self._unet_params + self._te_params

    def make_optimizer(self, lr: float, scale: float, fused_kernel: bool) -> tuple[Any, Any]:
        """(the optimizer to prepare or None, what the LR scheduler drives)."""
        cfg = self.cfg
        groups = optimizers.param_groups(cfg, self._unet_params, self._te_params, lr, scale)
        if not (cfg.fused_backward or cfg.master_weights == "bf16"):
            opt = optimizers.build(cfg, groups, lr, fused=fused_kernel)
            return opt, opt
        from sdstudio.core.full.fused_backward import ParamOptimizers
        from sdstudio.core.full.stochastic_rounding import StochasticRounding

        counters = self.models.counters
        rounding = StochasticRounding(cfg.seed, lambda: counters.step) if cfg.master_weights == "bf16" else None
        self.param_optimizers = ParamOptimizers(groups, lambda ps, group_lr: optimizers.build(cfg, ps, group_lr),
                                                max_grad_norm=cfg.max_grad_norm if cfg.fused_backward else None,
                                                rounding=rounding)
        return None, self.param_optimizers.holder

    def after_prepare(self, accelerator: Any) -> None:
        """The EMA (over the plain modules, on the device or in host memory), fused hooks, and
        what Accelerate checkpoints besides the scheduler and counters (in this order)."""
        from sdstudio.core.errors import ConfigError

        cfg = self.cfg
        if cfg.fused_backward and accelerator.num_processes > 1:
            raise ConfigError("fused_backward", f"cannot work with {accelerator.num_processes} processes (DDP reduces "
                              "gradients after the backward hook has stepped them): set fused_backward = false, or "
                              "train in one process")
        if self.param_optimizers is not None:
            if cfg.fused_backward:
                self.param_optimizers.attach()
            accelerator.register_for_checkpointing(self.param_optimizers)
        if cfg.use_ema:
            from sdstudio.core.full.ema import TrainedEMA

            self.ema = TrainedEMA(self.models.plain(), cfg.ema_decay, cfg.ema_update_every, cfg.ema_on_cpu)
            accelerator.register_for_checkpointing(self.ema)
        install_hooks(accelerator, self)

    def describe(self, limit: int | None) -> str:
        """The run's full fine-tune in one log line."""
        cfg = self.cfg
        count = lambda ps: f"{sum(p.numel() for p in ps) / 1e6:.1f} M"  # noqa: E731
        te = f", text encoders {count(self._te_params)} at {cfg.text_encoder_lr or cfg.learning_rate:g}" if self._te_params else ""
        ema = (f"EMA decay {cfg.ema_decay:g} every {cfg.ema_update_every} step(s)" + (" in host memory" if cfg.ema_on_cpu else "")
               if cfg.use_ema else "no EMA")
        return (f"full fine-tune: UNet {count(self._unet_params)} weights at {cfg.learning_rate:g}{te}; "
                f"{cfg.resolved_optimizer}{', fused backward' if cfg.fused_backward else ''}; "
                f"{cfg.master_weights} weights{' (stochastic rounding)' if cfg.master_weights == 'bf16' else ''}; {ema}; "
                f"keeps {'all' if limit is None else limit} checkpoints")

    # one optimizer step (after the backward)
    def update(self, accelerator: Any, clip: Any) -> None:
        """Clip and step (unless fused backward stepped already), schedule, then the EMA."""
        m = self.models
        if self.param_optimizers is not None:
            if not self.cfg.fused_backward:
                clip()
                self.param_optimizers.step_all()
            self.param_optimizers.holder.step()
        else:
            clip()
            m.optimizer.step()
        m.lr_scheduler.step()
        if m.optimizer is not None:
            m.optimizer.zero_grad(set_to_none=True)
        else:
            self.param_optimizers.zero_grad()

    def after_step(self, step: int) -> None:
        if self.ema is not None:
            self.ema.update(step)

    # checkpoints
    def write(self, staging: Path) -> None:
        """model/ (and ema/) of the checkpoint being staged (main process)."""
        trained = self.models.plain()
        weights.save_components(staging, trained)
        if self.ema is not None:
            with self.ema.swapped_in(for_compute=False):
                weights.save_components(staging, trained, ema=True)

    def read(self, checkpoint: Path) -> None:
        """The weights (and averages) of `checkpoint` into the live modules (every process)."""
        trained = self.models.plain()
        for name, model in trained.items():
            weights.load_into(model_dir(checkpoint) / name, model)
        if self.ema is not None:
            if not has_ema(checkpoint):
                raise FileNotFoundError(f"{checkpoint}: holds no ema/ weights, but this run uses use_ema")
            for name in trained:
                self.ema.load_averages(name, weights.read_tensors(model_dir(checkpoint, ema=True) / name))

    @contextlib.contextmanager
    def evaluated(self) -> Iterator[None]:
        """Within: the weights samples and the validation loss see (the EMA's, with use_ema)."""
        with self.ema.swapped_in(for_compute=True) if self.ema is not None else contextlib.nullcontext():
            yield


def install_hooks(accelerator: Any, full: FullTraining) -> None:
    """save_state writes no model files (the trainer writes model/ and ema/ beside state/);
    load_state reads them back from there."""

    def save_hook(_models: list[Any], weights_list: list[Any], _output_dir: str) -> None:
        weights_list.clear()

    def load_hook(loaded: list[Any], input_dir: str) -> None:
        loaded.clear()
        full.read(Path(input_dir).parent)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def has_resume_state(checkpoint: Path) -> bool:
    return is_full_checkpoint(checkpoint) and any((checkpoint / "state").glob("custom_checkpoint_*.pkl"))
