"""`sdstudio save RUN_DIR`: save a checkpoint after the current step (the run goes on)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("save", help="ask a running run to save a checkpoint now",
                       description="Ask the trainer of RUN_DIR, in this or any other session, to save a checkpoint "
                                   "after the current step; training goes on.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.runs.control import report_command

    return report_command(args.run_dir, "save")
