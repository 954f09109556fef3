"""`sdstudio merge`: weighted sum / add difference of checkpoints, LoRA fusing, VAE baking."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

EPILOG = """examples:
  sdstudio merge sd15.safetensors dreamshaper.safetensors -m 0.3 -o merged.safetensors
  sdstudio merge A.safetensors B.safetensors C.safetensors --method add-difference -m 1 -o out.safetensors
  sdstudio merge sd15.safetensors --lora style.safetensors:0.8 --lora face.safetensors -o fused.safetensors
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "merge", help="merge checkpoints or fuse LoRAs into one (streamed: low memory)",
        description="Merge models like A1111's checkpoint merger, reading one tensor at a time. Inputs: A1111 "
                    ".safetensors/.ckpt or diffusers folders, in any mix.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="MODEL", help="A [B [C]]: the base, the model to merge in, "
                   "and (add-difference) the model to subtract")
    p.add_argument("--method", choices=("weighted-sum", "add-difference"), default=None,
                   help="weighted-sum: (1-M)·A + M·B (default with two models); add-difference: A + M·(B - C) "
                        "(default with three)")
    p.add_argument("-m", "--multiplier", dest="multiplier", type=float, default=None, metavar="M",
                   help="the multiplier M, as A1111 calls it (default 0.5)")
    p.add_argument("--alpha", dest="alpha", type=float, default=None, help=argparse.SUPPRESS)  # old name
    p.add_argument("--lora", action="append", default=[], metavar="FILE[:SCALE]",
                   help="fuse a LoRA (kohya or diffusers/PEFT file) at SCALE (default 1); repeatable")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output .safetensors (or folder)")
    p.add_argument("--format", choices=("single-file", "diffusers"), default="single-file",
                   help="an A1111 single .safetensors (default) or a diffusers folder")
    p.add_argument("--dtype", choices=("fp16", "fp32", "bf16"), default="fp16", help="stored precision (default fp16)")
    p.add_argument("--vae", metavar="FILE", help="bake this VAE into the output")
    p.add_argument("--config", metavar="DIR", help="diffusers folder with configs/tokenizer for --format diffusers")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.lora.spec import parse_lora_spec
    from sdstudio.core.merge.merger import merge_files

    multiplier = args.multiplier
    if args.alpha is not None:
        print("note: --alpha is now --multiplier (-m), A1111's word; --alpha still works for now", file=sys.stderr)
        if multiplier is None:
            multiplier = args.alpha
    multiplier = 0.5 if multiplier is None else multiplier
    models = list(args.models)
    if len(models) > 3:
        raise SdstudioError(f"merge takes at most three models (A B C), got {len(models)}")
    method = args.method or ("add-difference" if len(models) == 3 else "weighted-sum")
    if method == "add-difference" and len(models) != 3:
        raise SdstudioError("--method add-difference needs three models: A B C")
    if method == "weighted-sum" and len(models) == 3:
        raise SdstudioError("weighted-sum takes two models; drop C or use --method add-difference")
    if len(models) == 1 and not args.lora:
        raise SdstudioError("nothing to merge: give a second model or --lora FILE")
    loras = [parse_lora_spec(s) for s in args.lora]
    start = time.monotonic()
    tty = sys.stderr.isatty()
    shown = [-1]

    def progress(done: int, total: int) -> None:
        pct = int(100 * done / total)
        if pct != shown[0] and (tty or pct % 25 == 0):
            shown[0] = pct
            print(f"\rmerging {pct:3d}%", end="" if tty else "\n", file=sys.stderr, flush=True)

    out = merge_files(models[0], args.output, models[1] if len(models) > 1 else None,
                      models[2] if len(models) > 2 else None, method=method, multiplier=multiplier, loras=loras,
                      vae=args.vae, dtype=args.dtype, fmt=args.format, config=args.config,
                      overwrite=args.overwrite, progress=progress)
    if tty:
        print(file=sys.stderr)
    what = f"{method} M={multiplier:g}" if len(models) > 1 else "LoRA fuse"
    print(f"wrote {out} ({what}, {args.dtype}, {time.monotonic() - start:.1f} s)")
    return 0
