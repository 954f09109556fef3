"""`sdstudio stop RUN_DIR [--wait]`: the trainer saves a checkpoint after this step and stops."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("stop", help="stop a running run (a checkpoint is saved)",
                       description="Ask the trainer of RUN_DIR, in this or any other session, to save a checkpoint "
                                   "after the current step and stop. Resume later with `sdstudio train --resume`.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--wait", action="store_true", help="return only when the trainer has really stopped")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.runs.control import report_command

    return report_command(args.run_dir, "stop", wait_done=args.wait)
