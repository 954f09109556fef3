"""What a long pass over a folder (captioning, masking, cropping) prints: its progress line on
stderr, and the line saying an undo restored its files."""

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


def print_undone(kind: str, entry: dict[str, Any], as_json: bool, restored: str | None = None) -> int:
    """Report an undone pass (an `core.io.edit_log` entry); `restored` says what came back (default:
    the number of files). Returns the exit code, 0."""
    import json

    files = sorted(entry["before"])
    if as_json:
        print(json.dumps({"undone": entry["pass"], "kind": kind, "model": entry.get("model"), "files": files}, indent=2))
    else:
        what = restored or f"{len(files)} file(s) restored:"
        print(f"undid {kind} pass {entry['pass']} ({entry.get('model', entry.get('action'))}, {entry.get('time')}): "
              f"{what} {', '.join(files[:3])}{' …' if len(files) > 3 else ''}")
    return 0
