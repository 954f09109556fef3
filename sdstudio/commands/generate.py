"""`sdstudio generate`: images from a base model with LoRAs, and comparison grids."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="generate images with a base model and LoRAs (+ comparison grid)",
        description="Generate one PNG per seed (with A1111-style parameters). Several --lora are stacked; "
                    "--lora RUN_DIR compares every checkpoint of a run; several --model compare base models; "
                    "--grid writes a labelled grid of seeds x those columns (with several LoRA files and one "
                    "model, --grid compares the LoRAs one by one).")
    p.add_argument("--model", action="append", metavar="M",
                   help="base model: demo, a diffusers folder, a .safetensors/.ckpt file (repeat to compare)")
    p.add_argument("--lora", action="append", default=[], metavar="FILE[:SCALE]",
                   help="LoRA file (any format) or run folder, with an optional strength (default 1)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--seeds", default="1-4", help="seeds: 7, 1-4 or 1,5,9 (default 1-4)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--scheduler", help="ddim, pndm, euler, euler_a, heun, lms, dpm++2m, dpm++2m_karras, unipc "
                                       "(default: the model's own)")
    p.add_argument("--width", type=int, help="default: the model's native size")
    p.add_argument("--height", type=int)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--grid", action="store_true", help="also write DIR/grid.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.generation.generator import GenerateOptions, parse_seeds
    from sdstudio.core.generation.compare import plan_variants, run_comparison

    if args.steps < 1:
        raise SdstudioError(f"--steps {args.steps}: must be at least 1")
    opts = GenerateOptions(prompt=args.prompt, negative_prompt=args.negative_prompt, seeds=parse_seeds(args.seeds),
                           steps=args.steps, guidance=args.guidance, scheduler=args.scheduler,
                           width=args.width, height=args.height)
    variants = plan_variants(args.model or ["demo"], args.lora, compare_loras=args.grid)
    print(f"{len(variants)} x {len(opts.seeds)} images: " + ", ".join(v.label for v in variants))
    result = run_comparison(variants, opts, args.output, grid=args.grid,
                            on_image=lambda v, item, path: print(f"  {path}"))
    if result.grid:
        print(f"grid: {result.grid}")
    return 0
