"""One optimizer per parameter, stepped in the backward pass (`fused_backward = true`) or after it
(`master_weights = "bf16"` without fused_backward).

Fused backward: each parameter's optimizer steps in its post-accumulate-grad hook
(`Tensor.register_post_accumulate_grad_hook`, PyTorch's recipe for fusing the optimizer into
the backward) and its gradient is freed at once, so the model never holds a whole set of
gradients: about 4 bytes per parameter less at fp32 (SDXL's UNet: 10 GiB). Neither Accelerate
nor diffusers ships this (kohya has it for Adafactor on SDXL only), hence this module; it works
with any optimizer of optimizers.py and any model (SD 1.x/2.x and SDXL UNets, text encoders).

What it cannot do, refused by config_checks (or, for several processes, when the run starts):
- gradient_accumulation_steps > 1: a freed gradient cannot be accumulated;
- mixed_precision = "fp16": the GradScaler must see every gradient before any step (inf check);
- several processes: DDP all-reduces gradients in buckets after the hook has already stepped.
max_grad_norm clips each parameter's gradient on its own (the global norm needs every gradient at
once): a weaker clip than the plain step's, which bounds the whole gradient's norm.

A stop never ends a fused step half-way: weights change during the backward, so the trainer lets
the backward finish (stopping.abortable_steps only aborts the forward).

The LR scheduler drives a holder optimizer (no state, `step` does nothing) whose param groups
carry the learning rates; each parameter's optimizer takes its group's rate before it steps.
`state_dict`/`load_state_dict` let Accelerate checkpoint all of it (register_for_checkpointing).
"""

from __future__ import annotations

from typing import Any

from sdstudio.core.full.stochastic_rounding import StochasticRounding


def _holder(groups: list[dict[str, Any]]) -> Any:
    import torch

    class LearningRates(torch.optim.Optimizer):
        """The param groups and their learning rates, for the LR scheduler; no state of its own."""

        def __init__(self, param_groups: list[dict[str, Any]]) -> None:
            super().__init__(param_groups, {"lr": param_groups[0]["lr"]})

        def step(self, closure: Any = None) -> None:  # the parameters step in ParamOptimizers
            return None

    return LearningRates([{"params": list(g["params"]), "lr": g["lr"]} for g in groups])


class ParamOptimizers:
    """A `make(params, lr)` optimizer for each trained parameter, with their LR schedule in common."""

    def __init__(self, groups: list[dict[str, Any]], make: Any, max_grad_norm: float | None = None,
                 rounding: StochasticRounding | None = None) -> None:
        self.holder = _holder(groups)
        self.max_grad_norm = max_grad_norm  # per tensor (fused) or None (the trainer clipped globally)
        self.rounding = rounding  # bf16 weights: step in fp32, round stochastically
        self.params: list[Any] = []
        self.group_of: list[int] = []
        self.optimizers: list[Any] = []
        self._index: dict[int, int] = {}
        for g, group in enumerate(groups):
            for p in group["params"]:
                self._index[id(p)] = len(self.params)
                self.params.append(p)
                self.group_of.append(g)
                self.optimizers.append(make([p], group["lr"]))
        self._handles: list[Any] = []

    # stepping
    def step_param(self, param: Any) -> None:
        """Step `param` with its own optimizer and free its gradient."""
        import torch

        if param.grad is None:
            return
        i = self._index[id(param)]
        opt = self.optimizers[i]
        opt.param_groups[0]["lr"] = self.holder.param_groups[self.group_of[i]]["lr"]
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([param], self.max_grad_norm)
        if self.rounding is not None and param.dtype == torch.bfloat16:
            self.rounding.step(opt, param, i)
        else:
            opt.step()
        param.grad = None

    def step_all(self) -> None:
        """Every parameter with a gradient (after a plain backward)."""
        for p in self.params:
            self.step_param(p)

    def attach(self) -> None:
        """Step each parameter in the backward pass, as soon as its gradient is accumulated."""
        for p in self.params:
            self._handles.append(p.register_post_accumulate_grad_hook(self.step_param))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.holder.param_groups

    # checkpointing (Accelerate: register_for_checkpointing)
    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers], "holder": self.holder.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Each optimizer's state as saved; bf16 parameters are widened meanwhile, so that torch
        keeps their fp32 state fp32 (it casts state to the parameter's dtype)."""
        saved = state["optimizers"]
        if len(saved) != len(self.optimizers):
            raise ValueError(f"the checkpoint holds {len(saved)} parameter optimizers, this run has {len(self.optimizers)}")
        self.holder.load_state_dict(state["holder"])
        for p, opt, sd in zip(self.params, self.optimizers, saved):
            if self.rounding is not None:
                with self.rounding.widened(p):
                    opt.load_state_dict(sd)
            else:
                opt.load_state_dict(sd)
