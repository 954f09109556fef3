"""A JSONL log of the passes that rewrote files of a dataset folder, so one command undoes a pass byte for byte.

Captioning (captions.log.jsonl), mask making (masks.log.jsonl) and crop proposals
(crops.log.jsonl) all change files a person may have made by hand; each pass records what a
person asks about it (model, prompt, mode, time, per-image changes) and what undo needs: the
exact bytes of every file before the pass (or that it did not exist) and a digest of what the
pass left there. Undo refuses to overwrite a file edited since (unless forced), restores the
bytes, drops the line, and removes the log when it was the only one, so the folder is as it was.
Paths are stored relative to the log's folder ('..' allowed: a mask folder may sit beside the dataset).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.io import atomic


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@dataclass(frozen=True)
class EditLog:
    """The log `name` in folder `root`; `what` names a pass in messages ("captioning pass")."""

    root: Path
    name: str
    what: str

    @property
    def path(self) -> Path:
        return self.root / self.name

    def rel(self, path: Path) -> str:
        """How the log names `path`: relative to its folder, '/'-separated."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    def snapshot(self, files: list[Path]) -> dict[str, str | None]:
        """Relative path -> base64 of the file's bytes now, or None when it does not exist."""
        return {self.rel(p): base64.b64encode(p.read_bytes()).decode("ascii") if p.is_file() else None
                for p in files}

    def record(self, before: dict[str, str | None], info: dict[str, Any], changes: list[dict[str, Any]]) -> dict[str, Any]:
        """Append one pass (after its files were written) and return the entry."""
        entries = self.read()
        entry = {"pass": (entries[-1]["pass"] + 1) if entries else 1,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info, "changes": changes,
                 "before": before, "after": {rel: _digest(self.root / rel) for rel in before}}
        atomic.append_line(self.path, json.dumps(entry, ensure_ascii=False))
        atomic.apply_umask(self.path)
        return entry

    def read(self) -> list[dict[str, Any]]:
        """The logged passes, oldest first (a torn line is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "before" in row:
                out.append(row)
        return out

    def undo(self, force: bool = False) -> dict[str, Any]:
        """Undo the newest pass: restore every file it changed, then forget it. Returns its entry."""
        entries = self.read()
        if not entries:
            raise SdstudioError(f"{self.path}: no {self.what} to undo")
        last = entries[-1]
        edited = [rel for rel, digest in last["after"].items() if _digest(self.root / rel) != digest]
        if edited and not force:
            raise SdstudioError(f"{self.root / edited[0]} changed after {self.what} {last['pass']} "
                                f"({len(edited)} file(s) edited since); undo would lose those edits. "
                                "Pass --force to undo anyway.")
        for rel, data in last["before"].items():
            target = self.root / rel
            if data is None:
                target.unlink(missing_ok=True)
            else:
                atomic.write_bytes(target, base64.b64decode(data))
        rest = [json.dumps(e, ensure_ascii=False) for e in entries[:-1]]
        if rest:
            atomic.write_text(self.path, "\n".join(rest) + "\n")
        else:
            self.path.unlink()
        return last
