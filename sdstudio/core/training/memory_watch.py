"""The memory estimate at run start, and the measured peaks next to it, so its error is known.

At the start the trainer logs the estimate (memory_estimate.py) with this process's own RSS as the
baseline (measured after importing the training libraries) and resets the peak counters; every
metrics row then carries the peaks so far (`host_peak_gib`, and on CUDA `gpu_mem_gib`, the peak
allocated, and `gpu_reserved_gib`); status.json's `memory` holds the estimate and, at the end,
the measured peaks and measured/estimate ratios, and the log says both.

Host peak: Linux's VmHWM (peak resident set), reset at the start through /proc/self/clear_refs so
a studio that trains several runs in one process measures each run; elsewhere `ru_maxrss`, the
process's peak since it started.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdstudio.core.training.memory_estimate import GIB, MemoryEstimate, estimate, gib

_STATUS = Path("/proc/self/status")


def _proc_status(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int | None:
    """This process's resident set now (Linux), else None."""
    return _proc_status("VmRSS")


def peak_rss_bytes() -> int:
    """This process's peak resident set since the last `reset_peaks` (Linux), else since it started."""
    hwm = _proc_status("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere


def reset_peaks(device_type: str) -> None:
    """Start measuring peaks from now (the host's where the kernel allows, CUDA's always)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    if device_type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def process_baseline() -> int | None:
    """This process's RSS once the training libraries are imported (what a run adds to starts here)."""
    import accelerate  # noqa: F401
    import diffusers  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline  # noqa: F401 - their modules

    return rss_bytes()


def peaks(device_type: str) -> dict[str, float]:
    """The measured peaks so far, in GiB, for a metrics row."""
    row = {"host_peak_gib": peak_rss_bytes() / GIB}
    if device_type == "cuda":
        import torch

        row["gpu_mem_gib"] = torch.cuda.max_memory_allocated() / GIB
        row["gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
    return row


class MemoryWatch:
    """One run's estimate and measurement."""

    def __init__(self, est: MemoryEstimate, device_type: str) -> None:
        self.estimate = est
        self.device_type = device_type

    def measured(self) -> dict[str, Any]:
        """Estimate, measured peaks and their ratios (measured / estimate), for status.json."""
        host = peak_rss_bytes()
        out: dict[str, Any] = {"estimate": self.estimate.to_dict(), "host_peak_bytes": host,
                               "host_ratio": round(host / max(self.estimate.host_bytes, 1), 3)}
        if self.device_type == "cuda":
            import torch

            allocated = torch.cuda.max_memory_allocated()
            out.update(accelerator_peak_allocated_bytes=allocated,
                       accelerator_peak_reserved_bytes=torch.cuda.max_memory_reserved(),
                       accelerator_ratio=round(allocated / max(self.estimate.accelerator_bytes or 1, 1), 3))
        return out

    def summary(self) -> str:
        """The end-of-run log line: estimate against measured."""
        m = self.measured()
        text = (f"memory: host estimate ~{gib(self.estimate.host_bytes)}, measured peak RSS {gib(m['host_peak_bytes'])} "
                f"(x{m['host_ratio']:.2f})")
        if "accelerator_ratio" in m:
            text += (f"; accelerator estimate ~{gib(self.estimate.accelerator_bytes)}, measured peak "
                     f"{gib(m['accelerator_peak_allocated_bytes'])} allocated, "
                     f"{gib(m['accelerator_peak_reserved_bytes'])} reserved (x{m['accelerator_ratio']:.2f})")
        return text


def start(cfg: Any, base: Any, device_type: str, n_images: int, log: Callable[[str], None],
          run_dir: Any = None) -> MemoryWatch | None:
    """Estimate, log it, record it in status.json and reset the peak counters. Never fails the run:
    an estimate that cannot be made is logged as such."""
    from accelerate import PartialState

    from sdstudio.core.training.model_sizes import model_sizes

    if not PartialState().is_main_process:
        run_dir = None  # one process writes the run's status
    try:
        images = n_images + (cfg.num_class_images if cfg.with_prior_preservation else 0)
        est = estimate(cfg, model_sizes(base), "cuda" if device_type == "cuda" else "cpu", images,
                       baseline_bytes=process_baseline())
    except Exception as exc:  # noqa: BLE001 - an estimate is advice, never a reason to stop
        log(f"memory estimate: not available ({type(exc).__name__}: {exc})")
        return None
    log(est.line())
    watch = MemoryWatch(est, device_type)
    if run_dir is not None:
        run_dir.update_status(memory={"estimate": est.to_dict()})
    reset_peaks(device_type)
    return watch


def finish(watch: MemoryWatch | None, log: Callable[[str], None], run_dir: Any = None) -> None:
    """Log the estimate against the measured peaks and keep both in status.json."""
    if watch is None:
        return
    if run_dir is not None:
        run_dir.update_status(memory=watch.measured())
    log(watch.summary())
