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
    p.add_argument("--json", action="store_true", help="print the table and the recommendation as JSON")
    p.set_defaults(func=run)


def default_scorers(config: dict) -> list[str]:
    if config.get("scorers"):
        return list(config["scorers"])
    return ["demo"] if config.get("pretrained_model_name_or_path") == "demo" else ["clip"]


def format_table(table) -> list[str]:
    """The score table as text lines: one row per step, base first, the recommended row marked."""
    from sdstudio.core.training.scorers import LABELS

    metrics = table.metrics()
    rec = table.recommendation.step if table.recommendation else None
    head = f"{'':2}{'step':>6} {'val loss':>9} " + " ".join(f"{LABELS.get(m, m):>8}" for m in metrics) + f" {'seconds':>8}"
    lines = [head]
    for r in table.rows:
        mark = "▶ " if r.step == rec else "  "
        loss = f"{r.val_loss:9.5f}" if r.val_loss is not None else f"{'-':>9}"
        cells = " ".join(f"{r.scores[m]:8.3f}" if m in r.scores else f"{'-':>8}" for m in metrics)
        label = "base" if r.step == 0 else str(r.step)
        lines.append(f"{mark}{label:>6} {loss} {cells} {sum(r.seconds.values()):8.2f}")
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
    total = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"rows": [r.to_json() for r in table.rows],
                          "recommendation": table.recommendation.to_json() if table.recommendation else None,
                          "scorers": names, "load_seconds": scorer.load_seconds}, indent=2))
        return 0
    for line in format_table(table):
        print(line)
    scored = [r for r in table.rows if r.seconds]
    if scored:
        per = sum(sum(r.seconds.values()) for r in scored) / len(scored)
        print(f"scorers: {', '.join(names)}; {per:.2f} s per checkpoint ({scored[0].images} samples each), "
              f"models loaded in {scorer.load_seconds:.1f} s, {total:.1f} s in all")
    rec = table.recommendation
    if rec is not None:
        print(f"recommended: {rec.reason}" if rec.step is not None else rec.reason)
        if rec.step is not None:
            print(f"export it: sdstudio export {run_dir.path} --best")
    print(f"wrote {run_dir.scores_jsonl}")
    return 0
