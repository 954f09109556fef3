"""`sdstudio export`: a run checkpoint as the kohya .safetensors A1111 and ComfyUI load."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a checkpoint for A1111/ComfyUI (kohya LoRA)",
        description="Write a run's checkpoint as a kohya-format LoRA with its true alpha and training metadata. "
                    "Default output: RUN_DIR/exports/<run>-step<N>.safetensors.")
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT_DIR", help="a run folder or one of its checkpoints/step-N")
    p.add_argument("--step", type=int, help="checkpoint step of a run (default: the latest)")
    p.add_argument("--best", action="store_true", help="the recommended checkpoint (scores.jsonl; `sdstudio score` makes it)")
    p.add_argument("-o", "--output", metavar="FILE.safetensors", help="output file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (-o or the default one)")
    p.add_argument("--dtype", choices=("fp16", "fp32", "bf16"), default="fp16", help="tensor precision (default fp16)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from safetensors import safe_open

    from sdstudio.core.lora.export import export_checkpoint
    from sdstudio.core.training.scoring import recommended_step

    step = args.step
    if args.best:
        step, reason = recommended_step(args.source, args.step)
        print(f"recommended: {reason}")
    out = export_checkpoint(args.source, step=step, out=args.output, dtype=args.dtype, overwrite=args.overwrite)
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata() or {}
        n = len(list(fh.keys()))
    print(f"wrote {out}")
    print(f"  {n} tensors, rank {meta.get('ss_network_dim')}, alpha {meta.get('ss_network_alpha')}, "
          f"step {meta.get('ss_steps')}, base {meta.get('ss_sd_model_name')}")
    return 0
