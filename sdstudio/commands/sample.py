"""`sdstudio sample RUN_DIR`: render validation samples after the current step."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("sample", help="ask a running run for validation samples now",
                       description="Ask the trainer of RUN_DIR, in this or any other session, to render its "
                                   "validation samples after the current step.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.runs.control import report_command

    return report_command(args.run_dir, "sample")
