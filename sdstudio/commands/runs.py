"""`sdstudio runs [--json]`: every run with its state, step/total, last loss, pid, start and ETA."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "runs", help="list runs: running, finished, stopped, crashed, queued",
        description="List the runs in the home folder ($SDSTUDIO_HOME, runs_dir in ~/.config/sdstudio/config.toml, "
                    "a source checkout's models/, else ~/sdstudio) and the queue's waiting entries. "
                    "A run whose trainer died shows as \"crashed — resumable\": continue it with "
                    "`sdstudio train --resume RUN_DIR`.")
    p.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    p.add_argument("--root", metavar="DIR", help="runs folder (default: the home, see above)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.paths import home_source
    from sdstudio.core.runs.overview import all_runs, format_table

    root, where = (args.root, "--root") if args.root else home_source()
    rows = all_runs(root)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False), flush=True)
        return 0
    print(f"home: {root} ({where})")
    print("no runs yet" if not rows else format_table(rows))
    return 0
