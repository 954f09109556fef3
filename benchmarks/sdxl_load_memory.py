"""Peak host memory of loading SDXL for a bf16 run: fp32 then cast (before) against each component
in its final dtype, the VAE in fp32 (after: what the trainer does now).

    python benchmarks/sdxl_load_memory.py --dir FOLDER [--scale 1.0] [--keep]

FOLDER receives an SDXL-base-architecture diffusers folder with random weights, written from
the published SDXL-base configs (UNet 2.57 B parameters, CLIP-L, OpenCLIP bigG, VAE), stored in
fp16 as the hub's fp16 files and A1111/ComfyUI single files are (about 7 GB on disk). It is
written one tensor at a time, so making it needs little memory. `--scale` below 1 shrinks the
UNet's transformer depth and both encoders' layer counts, for a machine without the memory.

Each measurement runs in a fresh process, alone: the figures are that process's peak resident
set (VmHWM, what `/usr/bin/time -v` calls maximum resident set size) and its peak anonymous
memory (RssAnon, sampled every 20 ms): RSS also counts the pages of the mmap-ed weight files
being read, which the kernel can drop, anonymous memory is what must fit in RAM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30

sys.path.insert(0, str(Path(__file__).resolve().parent))
# SDXL base 1.0's published config values (UNet, VAE, CLIP ViT-L, OpenCLIP ViT-bigG)
from sdxl_speed import CLIP_BIGG as CLIP_G  # noqa: E402
from sdxl_speed import CLIP_L  # noqa: E402
from sdxl_speed import SDXL_UNET as UNET  # noqa: E402
from sdxl_speed import SDXL_VAE as VAE  # noqa: E402

SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
             "steps_offset": 1, "timestep_spacing": "leading", "prediction_type": "epsilon"}


def _write_streamed_safetensors(module, path: Path, seed: int) -> int:
    """A .safetensors of `module`'s state (meta tensors: names, shapes) with random fp16 values,
    generated and written one tensor at a time; returns the parameter count."""
    import torch

    state = module.state_dict()
    header, offset = {}, 0
    codes = {torch.float16: "F16", torch.int64: "I64"}
    dtypes = {}
    for name, t in state.items():
        dtype = torch.float16 if t.is_floating_point() else t.dtype
        dtypes[name] = dtype
        size = t.numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": codes[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    # one pool of random values, read at a varying offset: drawing 3.5 G fresh normals took minutes
    pool = (torch.randn(1 << 24, generator=torch.Generator().manual_seed(seed)) * 0.02).to(torch.float16).numpy()
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for i, (name, t) in enumerate(state.items()):
            if dtypes[name] == torch.int64:
                fh.write(torch.arange(t.numel(), dtype=torch.int64).numpy().tobytes())
                continue
            left, start = t.numel(), (i * 7919) % len(pool)
            while left:
                n = min(left, len(pool) - start)
                fh.write(pool[start:start + n].tobytes())
                left, start = left - n, 0
    return sum(p.numel() for p in module.parameters())


def make_folder(out: Path, scale: float) -> dict[str, int]:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sdstudio.demo.tiny import write_clip_tokenizer

    unet_cfg = dict(UNET)
    clip_l, clip_g = dict(CLIP_L), dict(CLIP_G)
    if scale < 1:
        unet_cfg["transformer_layers_per_block"] = [max(1, round(n * scale)) for n in UNET["transformer_layers_per_block"]]
        clip_l["num_hidden_layers"] = max(2, round(CLIP_L["num_hidden_layers"] * scale))
        clip_g["num_hidden_layers"] = max(2, round(CLIP_G["num_hidden_layers"] * scale))
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    with torch.device("meta"):
        models = {
            "unet": UNet2DConditionModel(**unet_cfg),
            "vae": AutoencoderKL(**VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**clip_l)),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**clip_g)),
        }
    for seed, (name, model) in enumerate(models.items()):
        (out / name).mkdir(exist_ok=True)
        if name.startswith("text"):
            model.config.save_pretrained(out / name)
            weights = out / name / "model.safetensors"
        else:
            model.save_config(out / name)
            weights = out / name / "diffusion_pytorch_model.safetensors"
        counts[name] = _write_streamed_safetensors(model, weights, seed)
    EulerDiscreteScheduler(**SCHEDULER).save_config(out / "scheduler")
    for tok in ("tokenizer", "tokenizer_2"):
        write_clip_tokenizer(out / tok, ["a", "photo"])
    index = {"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
             "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    return counts


CHILD = r"""
import json, os, resource, sys, threading, time
mode, folder = sys.argv[1], sys.argv[2]
import torch
from sdstudio.core.models import load_pipeline, resolve_base_model

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
peak_anon = [0]
done = threading.Event()
def sample():
    while not done.is_set():
        peak_anon[0] = max(peak_anon[0], status("RssAnon"))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
base_rss = status("VmRSS")
t0 = time.perf_counter()
base = resolve_base_model(folder)
if mode == "before":  # the old trainer: the pipeline in fp32, then the UNet and text encoders cast
    pipe = load_pipeline(base)
    for m in (pipe.text_encoder, pipe.text_encoder_2, pipe.unet):
        m.to(dtype=torch.bfloat16)
else:  # now: each component loaded in its final dtype, the VAE in fp32
    pipe = load_pipeline(base, torch_dtype=torch.bfloat16, vae_dtype=torch.float32)
seconds = time.perf_counter() - t0
done.set()
peak_anon[0] = max(peak_anon[0], status("RssAnon"))
dtypes = {c: str(getattr(pipe, c).dtype) for c in ("unet", "text_encoder", "text_encoder_2", "vae")}
print(json.dumps({"mode": mode, "seconds": seconds, "rss_before_load": base_rss, "vm_hwm": status("VmHWM"),
                  "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "peak_anon": peak_anon[0], "rss_after": status("VmRSS"), "dtypes": dtypes}))
"""


def measure(mode: str, folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(folder)], capture_output=True, text=True, env=env,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="where the random-weight SDXL folder is written")
    ap.add_argument("--scale", type=float, default=1.0, help="below 1: fewer transformer/encoder layers")
    ap.add_argument("--keep", action="store_true", help="keep the folder (it is about 7 GB at scale 1)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    counts = make_folder(args.dir, args.scale)
    print(f"random-weight SDXL (scale {args.scale}) written in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{k} {v / 1e6:,.1f} M" for k, v in counts.items()) + " parameters, fp16 files")
    try:
        rows = [measure(mode, args.dir) for mode in ("before", "after")]
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    print(f"{'load':<8}{'peak RSS (VmHWM)':>18}{'peak anon':>12}{'RSS after':>12}{'seconds':>9}  dtypes")
    for r in rows:
        print(f"{r['mode']:<8}{r['vm_hwm'] / GIB:>15.2f} GiB{r['peak_anon'] / GIB:>8.2f} GiB{r['rss_after'] / GIB:>8.2f} GiB"
              f"{r['seconds']:>9.1f}  {r['dtypes']}")
    print(f"(RSS before loading, torch and diffusers imported: {rows[0]['rss_before_load'] / GIB:.2f} GiB)")


if __name__ == "__main__":
    main()
