"""`sdstudio runs [--json]`: every run with its state, step/total, last loss, pid, start and ETA."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "runs", help="list runs: running, finished, stopped, crashed, queued",
        description="List the runs in the runs folder (models/ or $SDSTUDIO_RUNS) and the queue's waiting entries. "
                    "A run whose trainer died shows as \"crashed — resumable\": continue it with "
                    "`sdstudio train --resume RUN_DIR`.")
    p.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    p.add_argument("--root", metavar="DIR", help="runs folder (default: models/ or $SDSTUDIO_RUNS)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.paths import runs_root
    from sdstudio.core.runs.overview import all_runs, format_table

    root = args.root or runs_root()
    rows = all_runs(root)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False), flush=True)
    elif not rows:
        print(f"no runs in {root}")
    else:
        print(format_table(rows))
    return 0
