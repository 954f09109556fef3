"""Training speed of sdstudio's trainer, fast path against the plain path, in one run.

    python benchmarks/train_speed.py                  # CUDA: SD 1.5 architecture (random weights), 512 px
    python benchmarks/train_speed.py --cpu-smoke      # CPU: a tiny model, a few steps (CI runs this)
    python benchmarks/train_speed.py --only plain,db-b1 --steps 60 --compile

Each row runs `sdstudio.core.training.trainer.train` for warm-up + N optimizer steps and reports the
steady state: it/s, images/s, ms/step (median, p90), peak allocated GiB, and achieved
TFLOP/s of the UNet training step (FLOPs counted once per row with torch's FlopCounterMode).
The `plain` row is the straightforward path (no caches, autocast, one pass per micro-batch,
eager), as the diffusers example scripts do it. Prints JSON lines, then a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_images(folder: Path, count: int, size: int) -> Path:
    """Distinct square pictures (a coloured disc at varied places) for a DreamBooth folder."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        im = Image.new("RGB", (size, size), (40 + 20 * i % 200, 120, 200 - 10 * i % 150))
        r = size // 4
        cx, cy = size // 3 + (i * 37) % (size // 3), size // 3 + (i * 53) % (size // 3)
        ImageDraw.Draw(im).ellipse((cx - r, cy - r, cx + r, cy + r), fill=(230, 40 + 15 * i % 200, 60))
        im.save(folder / f"{i:03d}.png")
    return folder


def make_captioned(folder: Path, count: int, size: int) -> Path:
    make_images(folder, count, size)
    lines = [json.dumps({"file_name": f"{i:03d}.png", "text": "a photo of a red disc"}) for i in range(count)]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def rows_for(mode: str, cuda: bool) -> dict[str, dict[str, Any]]:
    """name -> config overrides. On CUDA the fast rows use bf16; the plain row fp16 + autocast."""
    mp = "bf16" if cuda else "no"
    rows = {
        "plain": dict(fast_path=False, cache_latents=False, mixed_precision="fp16" if cuda else "no"),
        "db-b1": dict(mixed_precision=mp),
        "t2i-b1xga4": dict(mixed_precision=mp, gradient_accumulation_steps=4, method="text2image"),
        "plain-t2i-b1xga4": dict(fast_path=False, cache_latents=False, mixed_precision="fp16" if cuda else "no",
                                 gradient_accumulation_steps=4, method="text2image"),
        "db-b1-gc": dict(mixed_precision=mp, gradient_checkpointing=True),
        "db-b8": dict(mixed_precision=mp, train_batch_size=8),
        "db-b32": dict(mixed_precision=mp, train_batch_size=32),
    }
    if mode == "smoke":
        rows = {k: v for k, v in rows.items() if k in ("plain", "db-b1", "t2i-b1xga4")}
    return rows


def unet_step_flops(model_dir: Path, resolution: int, device: Any, dtype: Any) -> float:
    """FLOPs of one UNet forward+backward with LoRA for one image (counted, not estimated)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from sdstudio.core.training.checkpoint import UNET_TARGETS, lora_config

    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet", torch_dtype=dtype).to(device)
    unet.requires_grad_(False)
    unet.add_adapter(lora_config(4, 4, UNET_TARGETS))
    lat = resolution // 8 if unet.config.sample_size >= 32 else resolution // 2
    x = torch.randn(1, 4, lat, lat, device=device, dtype=dtype)
    ctx = torch.randn(1, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    with FlopCounterMode(display=False) as counter:
        out = unet(x, torch.tensor([500], device=device), ctx, return_dict=False)[0]
        out.float().pow(2).mean().backward()
    del unet
    return float(counter.get_total_flops())


def run_row(name: str, overrides: dict[str, Any], base: dict[str, Any], steps: int, warmup: int,
            flops_per_image: float) -> dict[str, Any]:
    import torch

    from sdstudio.core import events as ev
    from sdstudio.core.config import build_config
    from sdstudio.core.training.trainer import train

    values = {**base, **overrides}
    if values.get("method") == "text2image":
        values["train_data_dir"] = values.pop("captioned_dir")
        for k in ("instance_data_dir", "instance_prompt"):
            values.pop(k, None)
    else:
        values.pop("captioned_dir", None)
    values["max_train_steps"] = warmup + steps
    values["output_dir"] = str(Path(values["output_dir"]) / name)
    cfg = build_config(values)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    t0 = time.perf_counter()
    run = train(cfg, on_event=lambda e: times.append(e.seconds) if isinstance(e, ev.StepEvent) else None)
    wall = time.perf_counter() - t0
    steady = sorted(times[warmup:])
    median = statistics.median(steady)
    p90 = steady[min(len(steady) - 1, int(0.9 * len(steady)))]
    images = cfg.images_per_step
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"row": name, "batch": cfg.train_batch_size, "grad_accum": cfg.gradient_accumulation_steps,
            "mixed_precision": cfg.mixed_precision, "fast_path": cfg.fast_path,
            "gradient_checkpointing": cfg.gradient_checkpointing, "torch_compile": cfg.torch_compile,
            "it_per_s": 1.0 / median, "images_per_s": images / median, "ms_median": 1000 * median,
            "ms_p90": 1000 * p90, "first_step_s": times[0], "peak_alloc_gib": peak,
            "unet_tflops": flops_per_image * images / median / 1e12, "unet_flop_per_image": flops_per_image,
            "wall_s": wall, "steps": len(times), "final_loss": run.metrics()[-1]["loss"]}


def time_sampling(model_dir: Path, resolution: int, steps: int, dtype: Any, device: Any) -> dict[str, Any]:
    """4 validation images of one prompt at `steps` steps, as one batch."""
    import torch

    from sdstudio.core.models import load_pipeline

    pipe = load_pipeline(str(model_dir), torch_dtype=dtype).to(device)
    def once() -> float:
        gens = [torch.Generator("cpu").manual_seed(s) for s in range(4)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        pipe(["a photo of sks dog"] * 4, num_inference_steps=steps, height=resolution, width=resolution, generator=gens)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t
    once()
    runs = [once() for _ in range(3)]
    return {"row": f"sample-4x{steps}", "seconds_median": statistics.median(runs), "seconds_min": min(runs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU, a few steps")
    ap.add_argument("--steps", type=int, default=None, help="measured steps per row")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--only", default="", help="comma-separated row names")
    ap.add_argument("--compile", action="store_true", help="add torch.compile rows")
    ap.add_argument("--model", help="an existing diffusers folder instead of a random SD 1.5")
    args = ap.parse_args(argv)

    import diffusers
    import torch

    cuda = torch.cuda.is_available() and not args.cpu_smoke
    device = torch.device("cuda" if cuda else "cpu")
    mode = "cuda" if cuda else "smoke"
    steps = args.steps or (30 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    resolution = 512 if cuda else 32
    tmp = Path(tempfile.mkdtemp(prefix="sdstudio-speed-"))
    if args.model:
        model_dir = Path(args.model)
    elif cuda:
        from sdstudio.demo.sd15_arch import build_sd15

        t = time.perf_counter()
        model_dir = build_sd15(tmp / "sd15")
        print(f"# built random SD 1.5 in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    else:
        from sdstudio.demo.tiny import build_tiny_pipeline

        model_dir = build_tiny_pipeline(tmp / "tiny", words=["a", "photo", "of", "sks", "dog", "red", "disc"])
    device_name = torch.cuda.get_device_name(0) if cuda else "cpu"
    header = {"device": device_name, "torch": torch.__version__, "diffusers": diffusers.__version__,
              "resolution": resolution, "steps": steps, "warmup": warmup}
    print(json.dumps({"header": header}), flush=True)
    base = {"pretrained_model_name_or_path": str(model_dir), "resolution": resolution,
            "instance_data_dir": str(make_images(tmp / "instance", 8, resolution)),
            "captioned_dir": str(make_captioned(tmp / "captioned", 8, resolution)),
            "instance_prompt": "a photo of sks dog", "learning_rate": 1e-4, "checkpointing_steps": 100000,
            "validation_steps": 100000, "num_validation_images": 1, "validation_num_inference_steps": 1,
            "output_dir": str(tmp / "runs"), "center_crop": True}
    flops = unet_step_flops(model_dir, resolution, device, torch.bfloat16 if cuda else torch.float32)
    rows = rows_for(mode, cuda)
    if args.compile and cuda:
        rows["db-b1-compile"] = dict(mixed_precision="bf16", torch_compile=True)
        rows["db-b8-compile"] = dict(mixed_precision="bf16", torch_compile=True, train_batch_size=8)
    wanted = [r for r in args.only.split(",") if r]
    results = []
    for name, overrides in rows.items():
        if wanted and name not in wanted:
            continue
        try:
            res = run_row(name, overrides, base, steps, warmup, flops)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory at a large batch: report, go on
            res = {"row": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        results.append(res)
        print(json.dumps(res), flush=True)
    sampling = time_sampling(model_dir, resolution, 30 if cuda else 2, torch.float16 if cuda else torch.float32, device)
    print(json.dumps(sampling), flush=True)
    print(f"\n{device_name} · torch {torch.__version__} · diffusers {diffusers.__version__} · {resolution} px · "
          f"{steps} steps after {warmup} warm-up · UNet step {flops / 1e12:.3f} TFLOP/image")
    print(f"{'row':<18}{'batch':>6}{'ga':>4}{'it/s':>8}{'img/s':>8}{'ms med':>9}{'ms p90':>9}{'peak GiB':>10}{'TFLOP/s':>9}")
    for r in results:
        if "error" in r:
            print(f"{r['row']:<18}  {r['error']}")
            continue
        peak = f"{r['peak_alloc_gib']:.2f}" if r["peak_alloc_gib"] is not None else "-"
        print(f"{r['row']:<18}{r['batch']:>6}{r['grad_accum']:>4}{r['it_per_s']:>8.2f}{r['images_per_s']:>8.1f}"
              f"{r['ms_median']:>9.1f}{r['ms_p90']:>9.1f}{peak:>10}{r['unet_tflops']:>9.2f}")
    print(f"{sampling['row']:<18} {sampling['seconds_median']:.3f} s median (min {sampling['seconds_min']:.3f} s)")
    return 0 if all("error" not in r for r in results) or cuda else 1


if __name__ == "__main__":
    raise SystemExit(main())
