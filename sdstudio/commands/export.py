"""`sdstudio export`: a run checkpoint as the file A1111 and ComfyUI load.

A LoRA run's checkpoint becomes a kohya LoRA (core/lora/export.py); a full fine-tune's becomes the
whole model, an fp16 single file in the LDM/SGM layout or a diffusers folder (core/full/export.py).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a checkpoint for A1111/ComfyUI (a LoRA, or a full fine-tune's model)",
        description="Write a run's checkpoint for A1111/ComfyUI. LoRA runs: a kohya-format LoRA with its true alpha "
                    "and training metadata (RUN_DIR/exports/<run>-step<N>.safetensors). Full fine-tune runs: the "
                    "whole model, by default one fp16 .safetensors in the LDM (SD 1.x/2.x) or SGM (SDXL) layout with "
                    "the EMA weights when the run kept them (RUN_DIR/exports/<run>-step<N>[-ema].safetensors).")
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT_DIR", help="a run folder or one of its checkpoints/step-N")
    p.add_argument("--step", type=int, help="checkpoint step of a run (default: the latest)")
    p.add_argument("--best", action="store_true", help="the recommended checkpoint (scores.jsonl; `sdstudio score` makes it)")
    p.add_argument("-o", "--output", metavar="FILE.safetensors|FOLDER", help="output file (a folder with --format diffusers)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (-o or the default one)")
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16", help="tensor precision (default fp16)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="full runs: the EMA weights (default: when the checkpoint has them) or, with --no-ema, the trained ones")
    p.add_argument("--format", choices=("single-file", "diffusers"), default=None, dest="fmt",
                   help="full runs: one A1111/ComfyUI .safetensors (default) or a diffusers pipeline folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.full.export import is_full_source
    from sdstudio.core.training.scoring import recommended_step

    step = args.step
    if args.best:
        step, reason = recommended_step(args.source, args.step)
        print(f"recommended: {reason}")
    if is_full_source(args.source):
        return _export_full(args, step)
    if args.ema is not None or args.fmt not in (None, "single-file"):
        given = "--ema" if args.ema else "--no-ema" if args.ema is not None else f"--format {args.fmt}"
        raise SdstudioError(f"{args.source}: {given} applies to full fine-tune runs; this is a LoRA run, exported as a "
                            "kohya LoRA file (drop the option)")
    return _export_lora(args, step)


def _export_lora(args: argparse.Namespace, step: int | None) -> int:
    from safetensors import safe_open

    from sdstudio.core.lora.export import export_checkpoint

    out = export_checkpoint(args.source, step=step, out=args.output, dtype=args.dtype, overwrite=args.overwrite)
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata() or {}
        n = len(list(fh.keys()))
    print(f"wrote {out}")
    print(f"  {n} tensors, rank {meta.get('ss_network_dim')}, alpha {meta.get('ss_network_alpha')}, "
          f"step {meta.get('ss_steps')}, base {meta.get('ss_sd_model_name')}")
    return 0


def _export_full(args: argparse.Namespace, step: int | None) -> int:
    import json

    from sdstudio.core.full.export import export_full_checkpoint, export_summary

    out = export_full_checkpoint(args.source, step=step, ema=args.ema, dtype=args.dtype, fmt=args.fmt or "single-file",
                                 out=args.output, overwrite=args.overwrite)
    summary = export_summary(out)
    record = json.loads(summary["metadata"].get("sdstudio_export", "{}"))
    print(f"wrote {out}")
    print(f"  {summary['tensors']} tensors ({summary['family']} layout), {summary['bytes'] / 2**20:.1f} MiB, "
          f"step {record.get('step')}, {'EMA' if record.get('ema') else 'trained'} weights, {record.get('dtype')}, "
          f"base {record.get('base_model', {}).get('name')}")
    return 0
