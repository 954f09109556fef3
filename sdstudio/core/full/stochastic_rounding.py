"""bf16 weights updated with stochastic rounding (`master_weights = "bf16"`).

Why both choices exist, and why this one is not the default:
- fp32 master weights (the default) hold every trained weight in fp32 (4 bytes) with an fp32
  gradient (4 bytes) beside the optimizer state; the forward runs under autocast. Exact, the
  reference every other trainer matches, and what kill -9 + resume is tested against.
- bf16 weights keep the weight and its gradient in 2 bytes each: about 4 bytes per parameter less,
  10 GiB for SDXL's 2.6 B-parameter UNet, which is what lets a full SDXL fine-tune fit a 24 GiB
  card. bf16 has 8 bits of mantissa: a step of lr * update is usually far below half a unit in the
  last place of the weight (0.05 * 2**-8 = 2e-4 against lr = 1e-5), so rounding to nearest would
  drop nearly every update and training would stall. Stochastic rounding rounds up with the
  probability of the remainder, so each weight equals the fp32 trajectory in expectation and
  small updates accumulate (Zamirai et al. 2020; kohya's and OneTrainer's bf16 paths do the same).
  The optimizer still sees fp32: each parameter is widened to fp32 for its own update only (one
  tensor at a time, see ParamOptimizers), so the optimizer's state is fp32 and the transient
  costs one tensor, not a model.

The noise comes from a generator seeded by (run seed, step, parameter index), so a resumed run
draws the same rounding as an uninterrupted one; nothing needs to be saved for it.
No library ships this for arbitrary torch optimizers (bitsandbytes and transformers round to
nearest when they write bf16 weights), hence this module.
"""

from __future__ import annotations

from typing import Any

_LOW_BITS = 1 << 16  # bf16 is the upper half of an fp32
_KEEP_HIGH = -(1 << 16)  # 0xFFFF0000 as an int32


def round_stochastically(source: Any, generator: Any) -> Any:
    """`source` (fp32) rounded to bf16, up with the probability of its remainder: a random
    16-bit integer is added to the low half of its bits, which are then dropped. Exact for values
    bf16 holds; inf and NaN stay inf and NaN."""
    import torch

    bits = source.detach().contiguous().view(torch.int32)
    noise = torch.randint(0, _LOW_BITS, bits.shape, dtype=torch.int32, device=bits.device, generator=generator)
    rounded = (bits + noise).bitwise_and_(_KEEP_HIGH)
    finite = torch.isfinite(source)
    return torch.where(finite, rounded.view(torch.float32), source).to(torch.bfloat16)


class StochasticRounding:
    """Steps one bf16 parameter's optimizer in fp32 and rounds the result back stochastically."""

    def __init__(self, seed: int, step_number: Any) -> None:
        self.seed = int(seed)
        self.step_number = step_number  # () -> the optimizer step being taken (restored on resume)

    def generator(self, index: int, device: Any) -> Any:
        import torch

        g = torch.Generator(device=device)
        g.manual_seed((self.seed * 1_000_003 + int(self.step_number()) * 65_537 + index) % (2**63 - 1))
        return g

    def step(self, optimizer: Any, param: Any, index: int) -> None:
        """One optimizer step of `param` (bf16, with a gradient) computed in fp32."""
        import torch

        low = param.data
        param.data = low.float()
        param.grad = param.grad.float()
        try:
            optimizer.step()
        finally:
            high = param.data
            param.grad = None
            param.data = low
        low.copy_(round_stochastically(high, self.generator(index, high.device)))

    def widened(self, param: Any) -> "_Widened":
        """Within: `param` holds fp32 data (so an optimizer's load_state_dict keeps fp32 state)."""
        return _Widened(param)


class _Widened:
    def __init__(self, param: Any) -> None:
        self.param = param
        self.low = None

    def __enter__(self) -> Any:
        import torch

        if self.param.dtype == torch.bfloat16:
            self.low = self.param.data
            self.param.data = self.low.float()
        return self.param

    def __exit__(self, *_exc: Any) -> None:
        if self.low is not None:
            self.param.data = self.low
