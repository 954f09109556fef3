"""`captions.log.jsonl`: one line per captioning pass, so that one command undoes a pass byte for byte.

A line records the model, revision, prompt, mode, time and every image's previous and new
caption, plus what undo needs (see `sdstudio.core.io.edit_log`, shared with the mask and crop passes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sdstudio.core.captions.storage import CAPTIONS_LOG
from sdstudio.core.io.edit_log import EditLog


def _log(root: str | os.PathLike[str]) -> EditLog:
    return EditLog(Path(root), CAPTIONS_LOG, "captioning pass")


def snapshot(root: Path, files: list[Path]) -> dict[str, str | None]:
    """Relative path -> base64 of the file's bytes now, or None when it does not exist."""
    return _log(root).snapshot(files)


def record(root: Path, before: dict[str, str | None], info: dict[str, Any], changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Append one pass to the log (after its captions were written) and return the entry."""
    return _log(root).record(before, info, changes)


def read(root: Path) -> list[dict[str, Any]]:
    """The logged passes, oldest first (a torn line is skipped)."""
    return _log(root).read()


def undo(root: str | os.PathLike[str], force: bool = False) -> dict[str, Any]:
    """Undo the newest pass: restore every caption file it changed, then forget it. Returns its entry."""
    return _log(root).undo(force)
