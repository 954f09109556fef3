"""The progress line of a long pass over a folder (captioning, masking) on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def progress_printer(quiet: bool) -> Callable[[Any], None]:
    """Redraw `p.line()` in place on a terminal; print only the last one otherwise (logs stay short)."""
    tty = sys.stderr.isatty()

    def show(p: Any) -> None:
        if quiet:
            return
        if tty:
            print("\r" + p.line(), end="" if p.done < p.total else "\n", file=sys.stderr, flush=True)
        elif p.done == p.total:
            print(p.line(), file=sys.stderr, flush=True)
    return show
