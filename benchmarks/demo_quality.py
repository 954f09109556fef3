"""Checker figures of a demo-world model: every training caption and every held-out caption over seeds.

    python benchmarks/demo_quality.py                      # the built-in demo model
    python benchmarks/demo_quality.py --model models/demo-work/latest --seeds 4 --grid grid.png
    python benchmarks/demo_quality.py --sweep "10:3,20:4,20:7.5"   # steps:guidance pairs

Prints colour / shape / background accuracy (targets: training captions >= 95 % colour and
>= 90 % shape; held-out colour x shape pairs >= 90 % and >= 80 %) and, with --grid, writes a
labelled grid PNG (one row per held-out caption and a few training captions).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--sweep", default=None, help="steps:guidance pairs, comma separated (default: the model's)")
    ap.add_argument("--grid", type=Path, default=None, help="write a sample grid PNG here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from sdstudio.demo import evaluation as demo_eval
    from sdstudio.core.models import load_pipeline

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model)
    seeds = list(range(args.seeds))
    train_caps, held_caps = demo_eval.training_captions(), demo_eval.holdout_captions()
    settings = [(demo_eval.DEMO_STEPS, demo_eval.DEMO_GUIDANCE)]
    if args.sweep:
        settings = [(int(a), float(b)) for a, b in (p.split(":") for p in args.sweep.split(","))]
    for steps, guidance in settings:
        t0 = time.time()
        train = demo_eval.sample(pipe, train_caps, seeds, steps, guidance)
        held = demo_eval.sample(pipe, held_caps, seeds, steps, guidance)
        st, sh = demo_eval.score(train), demo_eval.score(held)
        print(f"steps {steps} guidance {guidance}: "
              f"training captions ({len(train)} images) colour {st['colour']:.1%} shape {st['shape']:.1%} "
              f"background {st['background']:.1%} | held-out ({len(held)}) colour {sh['colour']:.1%} "
              f"shape {sh['shape']:.1%} background {sh['background']:.1%} | {time.time() - t0:.0f}s", flush=True)
    if args.grid:
        from sdstudio.core.io import atomic
        from sdstudio.core.generation.contact_sheet import make_grid

        per = len(seeds)
        shown = held_caps + train_caps[::6]
        by_caption = {c: [im for p, _, im in held + train if p == c] for c in shown}
        sheet = make_grid([by_caption[c][:per] for c in shown], shown, [f"seed {s}" for s in seeds],
                          title=f"{args.model}: held-out pairs (top {len(held_caps)} rows), training captions")
        atomic.save_image(sheet, args.grid)
        print(f"grid: {args.grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
