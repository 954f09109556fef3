"""The machine: Python, torch, CUDA and the driver, each GPU with its memory, bf16."""

from __future__ import annotations

import shutil
import subprocess

from sdstudio.core.doctor.check import FAIL, INFO, OK, WARN, Check

GIB = 1024 ** 3


def python_check() -> list[Check]:
    from sdstudio.core.doctor.packages import python_version_check

    return [python_version_check()]


def torch_check() -> list[Check]:
    from sdstudio.core.doctor.packages import declared_ranges, version_check

    check = version_check("torch", declared_ranges().get("torch"))
    if check.status == FAIL:
        return [check]
    import torch

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    return [Check("torch", check.status, f"{torch.__version__} ({build})", check.advice)]


def nvidia_smi() -> list[dict[str, str]]:
    """What the driver reports per GPU (empty without nvidia-smi): name, driver, memory in MiB."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    fields = ("name", "driver_version", "memory.total", "memory.free")
    try:
        out = subprocess.run([exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [dict(zip(fields, (p.strip() for p in line.split(",")))) for line in out.splitlines() if line.strip()]


def gpu_checks() -> list[Check]:
    """CUDA and driver, one line per GPU with free/total memory, bf16 support."""
    import torch

    smi = nvidia_smi()
    driver = smi[0]["driver_version"] if smi else None
    if not torch.cuda.is_available():
        if smi:
            return [Check("cuda", FAIL, f"driver {driver} sees {len(smi)} GPU(s) but torch cannot use them "
                                        f"(torch {torch.__version__}, CUDA {torch.version.cuda or 'none'})",
                          "install a CUDA build of torch that this driver supports: "
                          "https://pytorch.org/get-started/locally/")]
        return [Check("cuda", WARN, "no CUDA GPU visible: training runs on the CPU",
                      "fine for the built-in demo model; a real SD/SDXL model needs an NVIDIA GPU"),
                Check("bf16", INFO, "not applicable without a GPU (use mixed_precision = \"no\")")]
    checks = [Check("cuda", OK, f"CUDA {torch.version.cuda}, driver {driver or 'unknown (no nvidia-smi)'}, "
                                f"{torch.cuda.device_count()} GPU(s)")]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        status, advice = OK, ""
        if total < 6 * GIB:
            status, advice = WARN, "under 6 GiB: SD 1.5 LoRA needs gradient_checkpointing and fp16; SDXL will not fit"
        elif free < total * 0.5:
            status, advice = WARN, "more than half the memory is in use by other processes (nvidia-smi shows which)"
        checks.append(Check(f"gpu {i}", status, f"{props.name}, {free / GIB:.1f} of {total / GIB:.1f} GiB free, "
                                                f"compute {props.major}.{props.minor}", advice))
    bf16 = torch.cuda.is_bf16_supported()
    checks.append(Check("bf16", OK if bf16 else INFO, "supported: mixed_precision = \"bf16\" works" if bf16 else
                        "not supported on this GPU: use mixed_precision = \"fp16\""))
    return checks
