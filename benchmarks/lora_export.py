"""Export time of an SD 1.5-size rank-4 LoRA (UNet attention + CLIP attention), goal < 1 s.

    python benchmarks/lora_export.py [--repeat 5] [--text-encoder/--no-text-encoder]

Builds a checkpoint with the trainer's own checkpoint writer (peft adapters on meta-device SD 1.5
models from the project's numbers in sdstudio/demo/sd15_arch.py, random LoRA weights) in a
temporary run, then times `export_checkpoint`
(read, rename, fp16 cast, hash, metadata, atomic write) and prints the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--text-encoder", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from lora_helpers import TEXT_TARGETS, sd15_lora_checkpoint

    from sdstudio.core.lora.export import export_checkpoint
    from sdstudio.core.runs.run_dir import RunDir

    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "sd15-bench")
        ckpt = sd15_lora_checkpoint(run, rank=args.rank, alpha=args.rank * 2.0,
                                    text_targets=TEXT_TARGETS if args.text_encoder else None)
        size_in = (ckpt / "pytorch_lora_weights.safetensors").stat().st_size
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = export_checkpoint(run.path, dtype="fp16")
            times.append(time.perf_counter() - t0)
        from safetensors import safe_open

        with safe_open(str(out), framework="pt") as fh:
            n = len(list(fh.keys()))
        print(f"SD 1.5 rank-{args.rank} LoRA ({'UNet + text encoder' if args.text_encoder else 'UNet only'}): "
              f"{size_in / 1e6:.1f} MB checkpoint -> {n} kohya tensors, {out.stat().st_size / 1e6:.1f} MB fp16")
        print(f"export time: median {statistics.median(times):.3f} s, min {min(times):.3f} s, "
              f"max {max(times):.3f} s over {args.repeat} runs (goal < 1 s)")


if __name__ == "__main__":
    main()
