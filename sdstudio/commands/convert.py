"""`sdstudio convert`: legacy attn-procs, diffusers/PEFT or kohya LoRA -> kohya or diffusers .safetensors."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a LoRA file (.bin/.pkl/.safetensors) to kohya or diffusers",
        description="Read a LoRA in any common layout (legacy attn-procs .bin/.pkl, diffusers/PEFT, kohya) and "
                    "write it as .safetensors. Pickles are read with weights_only=True: a file that would run "
                    "code is refused.")
    p.add_argument("source", metavar="FILE", help="LoRA file: .safetensors, .bin, .pkl, .pt")
    p.add_argument("-o", "--output", metavar="OUT.safetensors", help="output (default: FILE-<format>.safetensors)")
    p.add_argument("--to", choices=("kohya", "diffusers"), default="kohya",
                   help="kohya: A1111/ComfyUI; diffusers: load_lora_weights (default kohya)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--force", dest="overwrite", action="store_true", help=argparse.SUPPRESS)  # old name
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.lora.convert import convert_file

    r = convert_file(args.source, args.output, to=args.to, overwrite=args.overwrite)
    alphas = ", ".join(f"{a:g}" for a in r.alphas)
    ranks = ", ".join(str(x) for x in r.ranks)
    print(f"{args.source}: {r.source_format} LoRA, {r.modules} modules ({', '.join(r.components)}), "
          f"rank {ranks}, alpha {alphas}")
    print(f"wrote {r.path} ({r.target_format}, {r.tensors} tensors)")
    for key in r.keys[:3]:
        print(f"  {key}")
    if len(r.keys) > 3:
        print(f"  ... {len(r.keys) - 3} more")
    return 0
