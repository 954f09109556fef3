"""`sdstudio score`: score a run's checkpoints from its validation samples and recommend one."""

from __future__ import annotations

import argparse

from sdstudio.core.config import SCORERS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score", help="score each checkpoint's samples and recommend a checkpoint",
        description="Score the validation samples of every checkpoint (step 0 is the base model) and write "
                    "RUN_DIR/scores.jsonl with the recommended checkpoint and its reason. Default scorer: the run's "
                    "`scorers`, else `demo` on the demo model and `clip` otherwise. First it does what a stop left "
                    "pending (the stop's checkpoint's validation loss and samples: RUN_DIR/pending.json).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--scorer", action="append", choices=SCORERS, help="demo, clip or dino (repeatable)")
    p.add_argument("--clip-model", help="local folder or cached hub id of a CLIP model (default: the run's clip_model)")
    p.add_argument("--dino-model", help="local folder or cached hub id of a DINO model (default: the run's dino_model)")
    p.add_argument("--rescore", action="store_true", help="score steps again that are already scored")
    p.add_argument("--more-seeds", type=int, metavar="K",
                   help="when the pick is not distinguishable from other checkpoints, sample only those again on "
                        "up to K new seeds each (in rounds, from their saved LoRA weights, with the run's validation "
                        "prompts) until the pick is clear; the samples join the run's samples/")
    p.add_argument("--json", action="store_true", help="print the table and the recommendation as JSON")
    p.set_defaults(func=run)


def default_scorers(config: dict) -> list[str]:
    if config.get("scorers"):
        return list(config["scorers"])
    return ["demo"] if config.get("pretrained_model_name_or_path") == "demo" else ["clip"]


def format_table(table) -> list[str]:
    """The score table as text lines: one row per step, base first, the recommended row marked;
    the scores the pick is made on (subject, prompt) with their intervals."""
    from sdstudio.core.training.intervals import format_interval
    from sdstudio.core.training.scorers import LABELS

    metrics = table.metrics()
    rec = table.recommendation
    decisive = {rec.subject_metric, rec.prompt_metric} - {None} if rec else set()
    width = {m: 20 if m in decisive else 8 for m in metrics}
    head = (f"{'':2}{'step':>6} {'val loss':>9} " + " ".join(f"{LABELS.get(m, m):>{width[m]}}" for m in metrics)
            + f" {'images':>6} {'seconds':>8}")
    lines = [head]
    for r in table.rows:
        mark = "▶ " if rec is not None and r.step == rec.step else "  "
        loss = f"{r.val_loss:9.5f}" if r.val_loss is not None else f"{'-':>9}"
        cells = " ".join(
            f"{f'{r.scores[m]:.3f}' + (format_interval(r.intervals.get(m)) if m in decisive else ''):>{width[m]}}"
            if m in r.scores else f"{'-':>{width[m]}}" for m in metrics)
        label = "base" if r.step == 0 else str(r.step)
        lines.append(f"{mark}{label:>6} {loss} {cells} {r.images:>6} {sum(r.seconds.values()):8.2f}")
    return lines


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.runs.run_dir import RunDir
    from sdstudio.core.training.scoring import RunScorer

    run_dir = RunDir(args.run_dir)
    if not run_dir.exists():
        raise SdstudioError(f"{args.run_dir}: not a run directory (no run.toml)")
    run_dir.settle()
    from sdstudio.core.training.pending import complete_pending

    complete_pending(run_dir, log=lambda line: print(line, flush=True) if not args.json else None)
    names = args.scorer or default_scorers(run_dir.config())
    t0 = time.perf_counter()
    scorer = RunScorer(run_dir, names, args.clip_model, args.dino_model)
    table = scorer.score(rescore=args.rescore)
    more = None
    if args.more_seeds is not None:
        from sdstudio.core.training.more_seeds import sample_contenders

        if not args.json:
            for line in format_table(table):
                print(line)
            print(f"before: {table.recommendation.reason if table.recommendation else 'no recommendation'}", flush=True)
        more = sample_contenders(run_dir, scorer, args.more_seeds,
                                 log=(lambda _line: None) if args.json else (lambda line: print(line, flush=True)))
        table = more.table
    total = time.perf_counter() - t0
    if args.json:
        out = {"rows": [r.to_json() for r in table.rows],
               "recommendation": table.recommendation.to_json() if table.recommendation else None,
               "scorers": names, "load_seconds": scorer.load_seconds}
        if more is not None:
            out["more_seeds"] = {"outcome": more.outcome, "seconds": more.seconds,
                                 "rounds": [{"steps": r.steps, "seeds": r.seeds, "images": r.images,
                                             "seconds": r.seconds} for r in more.rounds]}
        print(json.dumps(out, indent=2))
        return 0
    for line in format_table(table):
        print(line)
    scored = [r for r in table.rows if r.seconds]
    if scored:
        per = sum(sum(r.seconds.values()) for r in scored) / len(scored)
        counts = sorted({r.images for r in scored})
        each = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        print(f"scorers: {', '.join(names)}; {per:.2f} s per checkpoint ({each} samples each), "
              f"models loaded in {scorer.load_seconds:.1f} s, {total:.1f} s in all")
    if more is not None:
        print(more_seeds_summary(more, args.more_seeds))
    rec = table.recommendation
    if rec is not None:
        print(f"recommended: {rec.reason}" if rec.step is not None else rec.reason)
        if rec.contenders and more is None:
            seeds = len({s.seed for s in run_dir.samples() if s.step == rec.step})  # suggest 3x the samples
            print(f"sample them again: sdstudio score {run_dir.path} --more-seeds {max(2, 2 * seeds)}")
        if rec.step is not None:
            print(f"export it: sdstudio export {run_dir.path} --best")
    print(f"wrote {run_dir.scores_jsonl}")
    return 0


def more_seeds_summary(more, budget: int) -> str:
    """How `--more-seeds` ended, in one sentence with its cost."""
    cost = f"{len(more.rounds)} round{'s' if len(more.rounds) != 1 else ''}, {more.seconds:.1f} s"
    if more.outcome == "clear":
        return f"more seeds: the pick is clear ({cost})"
    if more.outcome == "budget":
        left = more.table.recommendation.contenders
        return (f"more seeds: budget spent ({budget} new seeds per checkpoint, {cost}); still not distinguishable "
                f"from step{'s' if len(left) > 1 else ''} {', '.join(map(str, left))}: "
                "give a larger --more-seeds to sample further")
    return f"more seeds: nothing to compare ({cost})"

