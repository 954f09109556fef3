"""What mixed precision means for a run, and whether accumulation micro-batches are folded.

Precision (`mixed_precision`, `fast_path`):
- "no": everything fp32.
- "fp16": frozen weights fp16, the forward under autocast (Accelerate's), loss scaling with a
  GradScaler; LoRA layers compute in fp16.
- "bf16" with `fast_path`: frozen weights bf16 and NO autocast (the Accelerator is made without
  mixed precision, so `prepare` adds none): peft casts the input to the fp32 LoRA weights, so
  LoRA layers compute in fp32. Without `fast_path`: autocast bf16, LoRA layers compute in bf16.
The trainer logs the dtype a LoRA layer's output actually had in the first step.
A full fine-tune trains the weights themselves (`master_weights`): fp32 ones compute under
autocast whenever `mixed_precision` is fp16 or bf16 (fast_path or not); bf16 ones (stochastic
rounding) compute in bf16 without autocast.

Folding (`fast_path`, `gradient_accumulation_steps` > 1): one forward of all micro-batches is
faster, but needs the memory of the whole folded batch, which accumulation exists to avoid.
On CUDA the first step runs one pass per micro-batch and measures its peak; folding starts
only if the folded batch's estimate fits in the device's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FOLD_HEADROOM = 0.9  # use at most this share of the memory the run can have


@dataclass(frozen=True)
class Precision:
    weight_dtype: Any  # the frozen modules' dtype
    accelerate_mixed_precision: str  # what the Accelerator is given: it decides autocast
    autocast: bool


def plan(mixed_precision: str, fast_path: bool, full: bool = False, master_weights: str = "fp32") -> Precision:
    import torch

    if full and mixed_precision == "bf16":
        return Precision(torch.bfloat16, "no", False) if master_weights == "bf16" else Precision(torch.bfloat16, "bf16", True)
    if mixed_precision == "fp16":
        return Precision(torch.float16, "fp16", True)
    if mixed_precision == "bf16":
        return Precision(torch.bfloat16, "no", False) if fast_path else Precision(torch.bfloat16, "bf16", True)
    return Precision(torch.float32, "no", False)


def attach_cpu_scaler(accelerator: Any) -> bool:
    """fp16 on a CPU: Accelerate makes neither autocast nor a GradScaler there (it assumes a GPU).
    Torch has both for the CPU, so attach them before `prepare`: the fp16 path (loss scaling,
    the scale saved and restored with the state) is then the same as on a GPU. Returns True
    when attached."""
    import torch

    if accelerator.mixed_precision != "fp16" or accelerator.device.type != "cpu" or accelerator.scaler is not None:
        return False
    accelerator.native_amp = True
    accelerator.scaler = torch.amp.GradScaler("cpu")
    return True


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


class LoraDtypeProbe:
    """Records the dtype of one LoRA layer's output in the next forward pass."""

    def __init__(self, model: Any) -> None:
        self.seen: Any = None
        self._handle = None
        for name, module in model.named_modules():
            if name.endswith("lora_A.default"):
                self._handle = module.register_forward_hook(self._hook)
                break

    def _hook(self, _module: Any, _inputs: Any, output: Any) -> None:
        if self.seen is None:
            self.seen = output.dtype
        self.remove()

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class Folding:
    """Whether the micro-batches of one optimizer step run as one forward pass."""

    def __init__(self, cfg: Any) -> None:
        self.accum = int(cfg.gradient_accumulation_steps)
        self.batch = int(cfg.train_batch_size)
        self.wanted = bool(cfg.fast_path) and self.accum > 1
        self.fold = False
        self.probing = False  # CUDA: the next step runs unfolded and is measured
        self._base = 0

    def start(self, device_type: str) -> str | None:
        """The decision before the first step (a log line), or None when there is nothing to fold."""
        if self.accum == 1:
            return None
        if not self.wanted:
            return "fold decision: off (fast_path = false): one pass per micro-batch"
        if device_type == "cuda":
            self.probing = True
            return "fold decision: pending: the first step runs one pass per micro-batch and is measured"
        self.fold = True
        return (f"fold decision (not probed: CPU host memory): folding {self.accum} micro-batches into one pass of "
                f"{self.accum * self.batch} images")

    def begin_probe(self) -> None:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self._base = torch.cuda.memory_allocated()

    def end_probe(self) -> str:
        import torch

        free, _total = torch.cuda.mem_get_info()
        fits, message = decide_fold_cuda(self.accum, self._base, torch.cuda.max_memory_allocated(),
                                         free + torch.cuda.memory_reserved())
        self.fold, self.probing = fits, False
        return message


def decide_fold_cuda(accum: int, base_bytes: int, peak_bytes: int, available_bytes: int) -> tuple[bool, str]:
    """From a measured unfolded step: the folded batch needs the base memory plus `accum` times
    one micro-batch's activations."""
    per_micro = max(peak_bytes - base_bytes, 0)
    need = base_bytes + accum * per_micro
    budget = FOLD_HEADROOM * available_bytes
    gib = 2**30
    fits = need <= budget
    return fits, (
        f"fold decision (probe): step 1 ran {accum} passes at {peak_bytes / gib:.2f} GiB peak "
        f"({per_micro / gib:.2f} GiB per micro-batch); one folded pass needs about {need / gib:.2f} GiB of "
        f"{budget / gib:.2f} GiB usable: " + ("folding micro-batches into one pass" if fits
                                              else "one pass per micro-batch"))
