"""`captions.log.jsonl`: one line per captioning pass, so that one command undoes a pass byte for byte.

A line records what a person asks about a pass (model, revision, prompt, mode, time, every
image's previous and new caption) and what undo needs: the exact bytes of every caption file
before the pass (or that it did not exist) and a digest of what the pass left there. Undo
refuses to overwrite a file edited since (unless forced), restores the bytes, drops the line,
and removes the log when it was the only one, so the folder is as it was before the pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from sdstudio.core.captions.storage import CAPTIONS_LOG
from sdstudio.core.errors import SdstudioError
from sdstudio.core.io import atomic


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def snapshot(root: Path, files: list[Path]) -> dict[str, str | None]:
    """Relative path -> base64 of the file's bytes now, or None when it does not exist."""
    return {p.relative_to(root).as_posix(): base64.b64encode(p.read_bytes()).decode("ascii") if p.is_file() else None
            for p in files}


def record(root: Path, before: dict[str, str | None], info: dict[str, Any], changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Append one pass to the log (after its captions were written) and return the entry."""
    path = root / CAPTIONS_LOG
    entries = read(root)
    entry = {"pass": (entries[-1]["pass"] + 1) if entries else 1,
             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info, "changes": changes,
             "before": before, "after": {rel: _digest(root / rel) for rel in before}}
    atomic.append_line(path, json.dumps(entry, ensure_ascii=False))
    atomic.apply_umask(path)
    return entry


def read(root: Path) -> list[dict[str, Any]]:
    """The logged passes, oldest first (a torn line is skipped)."""
    path = root / CAPTIONS_LOG
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "before" in row:
            out.append(row)
    return out


def undo(root: str | os.PathLike[str], force: bool = False) -> dict[str, Any]:
    """Undo the newest pass: restore every caption file it changed, then forget it. Returns its entry."""
    base = Path(root)
    entries = read(base)
    if not entries:
        raise SdstudioError(f"{base / CAPTIONS_LOG}: no captioning pass to undo")
    last = entries[-1]
    edited = [rel for rel, digest in last["after"].items() if _digest(base / rel) != digest]
    if edited and not force:
        raise SdstudioError(f"{base / edited[0]} changed after captioning pass {last['pass']} "
                            f"({len(edited)} file(s) edited since); undo would lose those edits. "
                            "Pass --force to undo anyway.")
    for rel, data in last["before"].items():
        target = base / rel
        if data is None:
            target.unlink(missing_ok=True)
        else:
            atomic.write_bytes(target, base64.b64decode(data))
    rest = [json.dumps(e, ensure_ascii=False) for e in entries[:-1]]
    if rest:
        atomic.write_text(base / CAPTIONS_LOG, "\n".join(rest) + "\n")
    else:
        (base / CAPTIONS_LOG).unlink()
    return last
