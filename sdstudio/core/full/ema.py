"""The exponential moving average of a full fine-tune's trained weights (`use_ema`).

diffusers' `EMAModel` does the bookkeeping (the decay schedule, `state_dict`/`load_state_dict`
for Accelerate, `copy_to`); `OffloadableEMA` changes only its `step`, which needs the averages
on the weights' device, so that they can live in host memory (`ema_on_cpu`) and stay fp32 over
bf16 weights. The decay is EMAModel's: at the n-th update min(ema_decay, (1 + n') / (10 + n'))
with n' = n - 1 (so the first update copies the weights and the average warms up); one update
every `ema_update_every` optimizer steps.

The averages themselves are saved as weights, not pickled: `ema/<component>/` of a checkpoint
(core/full/layout.py), written by `save_pretrained` with the averages swapped into the model
(no second copy of the model). Accelerate checkpoints the small rest (`EmaCounters`).
Samples and the validation loss use the averages when there are any (`evaluated`): they are
what an export writes by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def _ema_class() -> Any:
    import torch
    from diffusers.training_utils import EMAModel

    class OffloadableEMA(EMAModel):
        """EMAModel whose averages may sit on another device (and dtype) than the weights."""

        @torch.no_grad()
        def step(self, parameters: Any) -> None:
            self.optimization_step += 1
            decay = self.get_decay(self.optimization_step)
            self.cur_decay_value = decay
            for shadow, param in zip(self.shadow_params, parameters):
                value = param.detach().to(shadow.device, shadow.dtype)
                if param.requires_grad:
                    shadow.sub_((1 - decay) * (shadow - value))
                else:
                    shadow.copy_(value)

    return OffloadableEMA


class TrainedEMA:
    """One EMAModel per trained component, updated every `every` optimizer steps."""

    def __init__(self, models: dict[str, Any], decay: float, every: int, on_cpu: bool) -> None:
        import torch

        cls = _ema_class()
        self.every = int(every)
        self.models = models  # component name -> plain module (what trains)
        self.emas: dict[str, Any] = {}
        for name, model in models.items():
            ema = cls([], decay=decay)
            # fp32 averages (over bf16 weights too), copied straight to where they live: no transient
            # second copy of the model on the accelerator
            ema.shadow_params = [p.detach().to("cpu" if on_cpu else p.device, torch.float32, copy=True)
                                 for p in model.parameters()]
            self.emas[name] = ema

    def update(self, step: int) -> bool:
        """After optimizer step `step`: average in the new weights when it is an update step."""
        if step % self.every:
            return False
        for name, ema in self.emas.items():
            ema.step(self.models[name].parameters())
        return True

    @contextlib.contextmanager
    def swapped_in(self, for_compute: bool) -> Iterator[None]:
        """Within: the models hold the averages. For saving (`for_compute` False) they are the
        averages' own tensors (fp32, possibly in host memory: no copy). For compute (samples,
        validation loss) they are put on the weights' device in the weights' dtype; averages in host
        memory then trade places with the weights, which wait in host memory meanwhile."""
        saved: list[tuple[Any, Any, Any]] = []  # (parameter, its weights, their device)
        try:
            for name, ema in self.emas.items():
                for param, shadow in zip(self.models[name].parameters(), ema.shadow_params):
                    raw = param.data
                    device = raw.device
                    if for_compute:
                        param.data = shadow.to(raw.device, raw.dtype)
                        if raw.device != shadow.device:
                            raw = raw.to("cpu")  # the weights wait in host memory
                    else:
                        param.data = shadow
                    saved.append((param, raw, device))
            yield
        finally:
            for param, raw, device in saved:
                param.data = raw.to(device) if raw.device != device else raw

    def state_dict(self) -> dict[str, Any]:
        """The counters (update count, decay settings); the averages go to ema/ as weights."""
        out = {}
        for name, ema in self.emas.items():
            sd = dict(ema.state_dict())
            sd.pop("shadow_params", None)
            out[name] = sd
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, ema in self.emas.items():  # the averages themselves come from ema/ (load_averages)
            ema.load_state_dict({k: v for k, v in state[name].items() if k != "shadow_params"})

    def load_averages(self, name: str, tensors: Any) -> None:
        """The averages of component `name` from its ema/ weights: (key, tensor) pairs, keys as in
        the model's state dict, read a shard at a time (weights.read_tensors)."""
        import torch

        shadows = dict(zip((key for key, _ in self.models[name].named_parameters()), self.emas[name].shadow_params))
        seen = set()
        with torch.no_grad():
            for key, tensor in tensors:
                if key in shadows:
                    shadows[key].copy_(tensor)
                    seen.add(key)
        if seen != set(shadows):
            raise ValueError(f"the saved averages of {name} lack {len(set(shadows) - seen)} of its weights")
