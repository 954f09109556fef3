"""Merge benchmark: sdstudio's streaming merge vs a naive load-both-merge-save, same run, same files.

    python benchmarks/merge.py                 # two SD 1.5-shaped fp16 files, weighted sum
    python benchmarks/merge.py --three         # three files, add difference
    python benchmarks/merge.py --preview       # re-apply time of the live preview merger (tiny/demo model, CPU)
    python benchmarks/merge.py --preview-sd15  # the same with SD 1.5-size weights (use on a GPU box)

Random-weight checkpoints with the real SD 1.5 shapes (UNet + VAE + CLIP, ~2.1 GB each in fp16)
are written to a temporary folder (--dir to choose it) and deleted afterwards. Each merge runs in
its own child process, which reports its resident memory right after its imports ("interpreter"),
the peak resident memory while it merges (VmRSS sampled every 10 ms), the peak of its anonymous
memory above the interpreter's (RssAnon: the heap the merge allocates) and the time of the merge
itself (imports excluded). ru_maxrss is printed too, but it is not the merge's figure: importing
torch peaks higher than the interpreter settles at, by an amount that varies with the page cache.
Both sides run with one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD_PRELUDE = """
import json, resource, sys, threading, time
import torch
torch.set_num_threads(1)
def status_mb(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1]) / 1024
peak = {'VmRSS': 0.0, 'RssAnon': 0.0}
def watch():
    while True:
        for field in peak:
            peak[field] = max(peak[field], status_mb(field))
        time.sleep(0.01)
def start():
    base = {field: status_mb(field) for field in peak}
    threading.Thread(target=watch, daemon=True).start()
    return base, time.perf_counter()
def report(base, t0):
    print(json.dumps({"seconds": time.perf_counter() - t0, "base_mb": base['VmRSS'],
                      "peak_mb": peak['VmRSS'], "anon_above_mb": peak['RssAnon'] - base['RssAnon'],
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
files, out, method = sys.argv[1:-2], sys.argv[-2], sys.argv[-1]
"""

_SDSTUDIO = _CHILD_PRELUDE + """
from sdstudio.core.merge.merger import merge_files
base, t0 = start()
merge_files(files[0], out, files[1], files[2] if len(files) > 2 else None, method=method, multiplier=0.3)
report(base, t0)
"""

_NAIVE = _CHILD_PRELUDE + """
from safetensors.torch import load_file, save_file
base, t0 = start()
sds = [load_file(f) for f in files]
a, m = sds[0], 0.3
merged = {}
for k, v in a.items():
    if 'model' in k and k in sds[1] and v.is_floating_point():
        if method == 'add-difference':
            v = a[k].float() + m * (sds[1][k].float() - sds[2][k].float())
        else:
            v = (1 - m) * a[k].float() + m * sds[1][k].float()
    merged[k] = v.half() if v.is_floating_point() else v
save_file(merged, out)
report(base, t0)
"""


def write_random_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]], seed: int) -> None:
    """A random fp16 checkpoint written tensor by tensor (never the whole model in memory)."""
    import torch

    from sdstudio.core.io.safetensors_io import SafetensorsStreamWriter

    g = torch.Generator().manual_seed(seed)
    writer = SafetensorsStreamWriter(path, [(k, "F16", s) for k, s in shapes.items()], {"format": "pt"})
    for key, shape in shapes.items():
        writer.write(key, (torch.randn(shape, generator=g) * 0.02).half())
    writer.close()


def run_child(code: str, files: list[Path], out: Path, method: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code, *map(str, files), str(out), method],
                         capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"child failed:\n{res.stderr[-3000:]}")
    out.unlink()
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_merge(args: argparse.Namespace) -> None:
    n = 3 if args.three else 2
    method = "add-difference" if args.three else "weighted-sum"
    tmp = Path(tempfile.mkdtemp(prefix="sdstudio-merge-bench-", dir=args.dir))
    try:
        from sdstudio.demo import sd15_arch

        shapes = sd15_arch.ldm_shapes()
        files = [tmp / f"model{i}.safetensors" for i in range(n)]
        t = time.perf_counter()
        for i, f in enumerate(files):
            write_random_checkpoint(f, shapes, seed=i)
        size = files[0].stat().st_size / 1e9
        print(f"{n} SD 1.5-shaped fp16 checkpoints, {len(shapes)} tensors, {size:.2f} GB each "
              f"(written in {time.perf_counter() - t:.0f} s); {method} M=0.3, fp16 out, 1 torch thread")
        print(f"{'':27s} {'time s':>7s} {'interpreter MB':>15s} {'peak RSS MB':>12s} {'peak above MB':>14s} "
              f"{'heap above MB':>14s} {'ru_maxrss MB':>13s}")
        for _ in range(args.repeat):
            for name, code in (("sdstudio merge (streamed)", _SDSTUDIO), ("naive load-merge-save", _NAIVE)):
                r = run_child(code, files, tmp / "out.safetensors", method)
                print(f"{name:27s} {r['seconds']:7.1f} {r['base_mb']:15.0f} {r['peak_mb']:12.0f} "
                      f"{r['peak_mb'] - r['base_mb']:14.0f} {r['anon_above_mb']:14.0f} {r['maxrss_mb']:13.0f}",
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_preview(args: argparse.Namespace) -> None:
    import torch

    from sdstudio.core.merge.preview import PreviewMerger
    from sdstudio.core.models import load_pipeline

    tmp = Path(tempfile.mkdtemp(prefix="sdstudio-preview-bench-", dir=args.dir))
    try:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(1)  # a shared CPU box: thread pools waiting on busy cores distort ms timings
        dtype = torch.float16 if device == "cuda" else torch.float32
        if args.preview_sd15:
            from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
            from transformers import CLIPTextConfig, CLIPTextModel

            from sdstudio.demo.sd15_arch import TEXT, UNET, VAE, ldm_shapes

            shapes = ldm_shapes()
            b_file = tmp / "b.safetensors"
            write_random_checkpoint(b_file, shapes, seed=1)
            pipe = StableDiffusionPipeline(
                vae=AutoencoderKL(**VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**TEXT)),
                unet=UNet2DConditionModel(**UNET),
                tokenizer=None, scheduler=None, safety_checker=None, feature_extractor=None,
                requires_safety_checker=False)
            label = "SD 1.5-size random weights"
        else:
            from sdstudio.core.paths import demo_model_dir
            from sdstudio.demo.tiny import build_tiny_pipeline

            demo = demo_model_dir()
            a_dir = demo if (demo / "model_index.json").exists() else build_tiny_pipeline(tmp / "a", seed=0)
            b_file = build_tiny_pipeline(tmp / "b", seed=1)
            pipe = load_pipeline(str(a_dir))
            label = "demo model" if a_dir == demo else "tiny test model (demo model not present)"
        pipe.to(device, dtype)
        preview = PreviewMerger(pipe, b_file, components=("unet",))
        n_params = sum(p.numel() for p in pipe.unet.parameters())
        times = []
        for i in range(args.iters + 2):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            preview.apply((i % 10) / 10)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        times = sorted(times[2:])  # first two: warm-up
        print(f"preview re-apply, UNet of the {label} ({n_params / 1e6:.1f} M params, {device}, {dtype}, "
              f"{torch.get_num_threads()} threads): median {1000 * times[len(times) // 2]:.2f} ms, "
              f"min {1000 * times[0]:.2f} ms over {len(times)} applies (load average {os.getloadavg()[0]:.1f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--three", action="store_true", help="three inputs, add difference")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of both merges (default 1)")
    parser.add_argument("--dir", help="where to write the temporary checkpoints (default: system temp)")
    parser.add_argument("--preview", action="store_true", help="time the live preview merger instead")
    parser.add_argument("--preview-sd15", action="store_true", help="preview timing with SD 1.5-size weights")
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    if args.preview or args.preview_sd15:
        bench_preview(args)
    else:
        bench_merge(args)


if __name__ == "__main__":
    main()
