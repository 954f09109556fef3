"""Does the recommended checkpoint hold up on fresh seeds? A demo DreamBooth run, measured by the judge.

Trains the shipped demo DreamBooth config with a checkpoint every 50 steps and two ordinary
validation prompts beside the instance prompt (8 seeds each) (or takes an existing run with --run), scores
it with the demo judge (`sdstudio score`), then judges every checkpoint on fresh seeds:
subject rate on the instance prompt and ordinary-caption fidelity on captions the run never
sampled. Prints the score table, the recommendation, the cost of scoring per checkpoint and
the fresh-seed figures of the recommended checkpoint beside the last one. With --more-seeds K, the
contenders the pick is not distinguishable from are first sampled again (`sdstudio score --more-seeds`),
and the fresh-seed judging shows whether the pick made then holds up.

    python benchmarks/recommend_demo.py [--run RUN_DIR | --out RUN_DIR] [--seeds 16] [--captions 10] [--all]
                                        [--more-seeds K]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

FRESH_SEEDS_FROM = 1000


def main() -> None:
    import torch

    from sdstudio.commands.score import format_table
    from sdstudio.core.config import load_config
    from sdstudio.core.generation.generator import Generator
    from sdstudio.core.paths import data_dir
    from sdstudio.core.runs.run_dir import RunDir
    from sdstudio.core.training.scoring import RunScorer
    from sdstudio.core.training.trainer import train
    from sdstudio.demo import evaluation

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, help="an existing demo DreamBooth run (default: train one)")
    ap.add_argument("--out", type=Path, help="where to train the run (default: a temporary folder)")
    ap.add_argument("--seeds", type=int, default=16, help="fresh seeds per prompt")
    ap.add_argument("--captions", type=int, default=10, help="ordinary captions judged per checkpoint")
    ap.add_argument("--all", action="store_true", help="judge every checkpoint, not only the recommended and the last")
    ap.add_argument("--more-seeds", type=int, help="sample the pick's contenders again on up to K new seeds first")
    args = ap.parse_args()
    torch.set_num_threads(1)

    if args.run is None:
        out = args.out or Path(tempfile.mkdtemp(prefix="sdstudio-recommend-")) / "run"
        cfg = load_config(data_dir() / "configs" / "demo-dreambooth.toml", evaluation.recommend_run_overrides(out))
        t0 = time.perf_counter()
        run = train(cfg)
        print(f"trained {run.path} in {time.perf_counter() - t0:.0f} s")
    else:
        run = RunDir(args.run)
    scorer = RunScorer(run, ["demo"])
    table = scorer.score(rescore=True)
    print("\n".join(format_table(table)))
    scored = [r for r in table.rows if r.seconds]
    per = sum(r.seconds["demo"] for r in scored) / len(scored)
    print(f"demo judge: {per:.3f} s per checkpoint ({scored[0].images} samples); validation loss: "
          + ", ".join(f"{r['val_seconds']:.2f} s" for r in _val_rows(run)) + " per checkpoint")
    rec = table.recommendation
    assert rec is not None and rec.step is not None
    print(f"recommended: {rec.reason}")
    if args.more_seeds:
        from sdstudio.commands.score import more_seeds_summary
        from sdstudio.core.training.more_seeds import sample_contenders

        more = sample_contenders(run, scorer, args.more_seeds, device="cpu")
        table, rec = more.table, more.table.recommendation
        print("\n".join(format_table(table)))
        print(more_seeds_summary(more, args.more_seeds))
        print(f"recommended: {rec.reason}")

    config = run.config()
    seeds = list(range(FRESH_SEEDS_FROM, FRESH_SEEDS_FROM + args.seeds))
    captions = evaluation.fresh_captions(args.captions)
    generator = Generator("demo", device="cpu")
    last = run.checkpoints()[-1].step
    steps = [c.step for c in run.checkpoints()] if args.all else sorted({rec.step, last})
    print(f"fresh seeds {seeds[0]}-{seeds[-1]}; ordinary captions: {len(captions)} x {len(seeds)} seeds")
    for step in [0, *steps]:
        lora = None if step == 0 else run.checkpoint(step).weights
        t0 = time.perf_counter()
        fig = evaluation.checkpoint_figures(generator, lora, config["instance_prompt"], captions, seeds)
        tag = "base" if step == 0 else ("recommended" if step == rec.step else "") + (" last" if step == last else "")
        print(f"step {step:>4} {tag:>17}: subject {fig['subject']:.0%}  ordinary captions {fig['ordinary']:.0%}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)


def _val_rows(run) -> list[dict]:
    import json

    rows = [json.loads(line) for line in run.metrics_jsonl.read_text().splitlines() if line.strip()]
    return [r for r in rows if "val_loss" in r]


if __name__ == "__main__":
    main()
