"""The memory estimate against measured peaks, for several configurations.

    python benchmarks/memory_estimate.py [--steps 2] [--only NAME ...] [--baseline]

Each training configuration runs in a fresh `sdstudio train` process; its peak RSS comes from the
kernel (wait4's ru_maxrss), its estimate from the run's status.json (`memory`, what the trainer
logged before loading), and on a GPU the peak allocated/reserved CUDA memory the trainer recorded.
`full-terms` measures the full fine-tuning terms (weights, gradients, AdamW and Adafactor state)
of a ~23 M-parameter UNet with torch's own optimizers in a fresh process, against the estimator's
terms. `--baseline` prints the RSS of a fresh Python that imported the training libraries (the
estimate's BASELINE_CPU, used where no trainer has measured its own).
A `full` configuration is skipped, saying so, when this checkout's trainer does not write full
checkpoints (training_method = "full" not implemented yet).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GIB = 2**30


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "SDSTUDIO_RUNS": str(home), "OMP_NUM_THREADS": "1"}


def _run(cmd: list[str], env: dict[str, str]) -> tuple[int, int, str]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, out


def configurations(tmp: Path) -> dict[str, list[str]]:
    from sdstudio.demo.tiny import build_tiny_sdxl_pipeline
    from tests.conftest import draw_shape_images

    sdxl = build_tiny_sdxl_pipeline(tmp / "tiny-sdxl", seed=0)
    draw_shape_images(tmp / "instance", 4, (230, 30, 30))
    tiny = ["--pretrained_model_name_or_path", str(sdxl), "--instance_data_dir", str(tmp / "instance"),
            "--instance_prompt", "a photo of sks dog", "--resolution", "32"]
    return {
        "demo-text2image lora": ["demo-text2image"],
        "demo-dreambooth lora": ["demo-dreambooth"],
        "demo-dreambooth lora, gradient checkpointing": ["demo-dreambooth", "--gradient_checkpointing", "true"],
        "tiny-sdxl lora + text encoders": [*tiny, "--train_text_encoder", "true"],
        "demo-dreambooth full adamw": ["demo-dreambooth", "--training_method", "full"],
        "demo-dreambooth full adafactor fused, EMA on CPU": ["demo-dreambooth", "--training_method", "full", "--optimizer",
                                                             "adafactor", "--fused_backward", "true", "--use_ema", "true",
                                                             "--ema_on_cpu", "true"],
        "tiny-sdxl full adamw + text encoders": [*tiny, "--training_method", "full", "--train_text_encoder", "true"],
    }


def train_rows(tmp: Path, steps: int, only: list[str]) -> None:
    from sdstudio.core.full.layout import is_full_checkpoint

    print("growth: above the process baseline (the RSS the trainer measured after importing the libraries)")
    print(f"{'configuration':<50} {'estimate':>10} {'peak RSS':>10} {'ratio':>6} {'growth est/meas':>17}  "
          "accelerator (est / allocated)")
    for name, args in configurations(tmp).items():
        if only and not any(o in name for o in only):
            continue
        out = tmp / "runs" / name.replace(" ", "_").replace(",", "").replace("+", "")
        cmd = [sys.executable, "-m", "sdstudio", "train", *args, "--max_train_steps", str(steps),
               "--num_validation_images", "0", "--validation_loss", "false", "--output_dir", str(out)]
        code, peak, log = _run(cmd, _env(tmp / "runs"))
        if code != 0:
            print(f"{name:<50} failed ({code}): {log.strip().splitlines()[-1] if log.strip() else ''}")
            continue
        checkpoint = max((out / "checkpoints").glob("step-*"))
        if "full" in name and not is_full_checkpoint(checkpoint):
            print(f"{name:<50} skipped: this checkout's trainer wrote a LoRA checkpoint (full training not in it)")
            continue
        memory = json.loads((out / "status.json").read_text())["memory"]
        est = memory["estimate"]
        acc = ""
        if est["accelerator_bytes"] is not None:
            acc = (f"{est['accelerator_bytes'] / GIB:.2f} / {memory['accelerator_peak_allocated_bytes'] / GIB:.2f} GiB "
                   f"(x{memory['accelerator_ratio']:.2f})")
        base = next(p["bytes"] for p in est["parts"] if p["name"].startswith("process baseline"))
        growth = f"{(est['host_bytes'] - base) / 2**20:.0f}/{(peak - base) / 2**20:.0f} MiB"
        print(f"{name:<50} {est['host_bytes'] / GIB:>8.3f} G {peak / GIB:>8.3f} G {peak / est['host_bytes']:>6.2f} "
              f"{growth:>17}  {acc}")


def full_terms(tmp: Path) -> None:
    from sdstudio.core.config import TrainConfig
    from sdstudio.core.models import BaseModel
    from sdstudio.core.training.memory_estimate import estimate
    from sdstudio.core.training.model_sizes import model_sizes
    from tests.test_memory_estimate import _MEASURE

    env = {**_env(tmp), "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp / "full" / "unet")], env=env, capture_output=True,
                          text=True, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    sizes = model_sizes(BaseModel("unet", "folder", "sd1", str(tmp / "full")))
    print(f"\nfull fine-tuning terms, UNet of {sizes.params('unet') / 1e6:.1f} M parameters (fp32, CPU, RSS growth):")
    for optimizer in ("adamw", "adafactor"):
        parts = {n: b for n, b, _ in estimate(TrainConfig(train_data_dir="x", training_method="full",
                                                          optimizer=optimizer), sizes, "cpu").parts}
        for term, part in (("weights", "weights (trained)"), ("gradients", "gradients"), (optimizer, f"{optimizer} state")):
            if optimizer == "adafactor" and term != optimizer:
                continue
            print(f"  {term:<10} estimate {parts[part] / 2**20:8.1f} MiB  measured {measured[term] / 2**20:8.1f} MiB  "
                  f"x{measured[term] / parts[part]:.3f}")


def baseline() -> None:
    code = ("from sdstudio.core.training.memory_watch import process_baseline as b; "
            "print(b())")
    done = subprocess.run([sys.executable, "-c", code], env=_env(Path(tempfile.gettempdir())), capture_output=True,
                          text=True, check=True)
    print(f"process baseline (fresh Python, training libraries imported): {int(done.stdout) / 2**20:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=[], help="configurations whose name contains one of these words")
    ap.add_argument("--baseline", action="store_true", help="only print the process baseline")
    args = ap.parse_args()
    if args.baseline:
        baseline()
        return
    with tempfile.TemporaryDirectory() as tmp:
        train_rows(Path(tmp), args.steps, args.only)
        if not args.only or "full-terms" in args.only:
            full_terms(Path(tmp))


if __name__ == "__main__":
    main()
