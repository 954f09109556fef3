"""Resume only what was started: the dataset and the base model must be the ones run.toml recorded.

The data order is a function of the number of examples (and their order), so a folder that
gained, lost or changed files gives another run under the same name; another base model
gives a meaningless one. Both are refused with a message naming the change; `--force`
resumes anyway and records what changed in run.toml.

The dataset record holds, per training image, its path, size, a hash of its bytes and a hash of
the caption it trains with (metadata.jsonl, a sidecar or the instance prompt alike): an image
edited in place at the same byte size, or a changed caption, is a change. Images are hashed in
full at every start (a few seconds per GB; the latent cache reads them all anyway) rather than
trusted by modification time, which a copy or `touch` changes while the content stays.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.training.examples import Example

_SHOWN = 5  # names listed per kind of change


class ResumeRefused(SdstudioError):
    """The run's inputs changed since it started."""


_HASH_CHARS = 16  # 64 bits: enough to tell an edit, and run.toml stays small for large datasets


def _short_sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:_HASH_CHARS]


def dataset_record(examples: list[Example], root: Path) -> dict[str, Any]:
    """The training files as run.toml records them: paths relative to the data folder, sizes, and
    short hashes of each file's bytes and of its caption."""
    from sdstudio.core.io.hashing import file_sha256

    return {"files": [ex.path.relative_to(root).as_posix() if ex.path.is_relative_to(root) else ex.path.as_posix()
                      for ex in examples],
            "sizes": [ex.path.stat().st_size for ex in examples],
            "hashes": [file_sha256(ex.path)[:_HASH_CHARS] for ex in examples],
            "captions": [_short_sha256(ex.caption.encode("utf-8")) for ex in examples]}


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n > 1 else ''}"


def dataset_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two dataset records (empty when equal). Hashes and
    captions are compared where both records have them (records before they existed have not)."""
    def table(record: dict[str, Any], field: str) -> dict[str, Any]:
        return dict(zip(record.get("files", []), record.get(field) or [None] * len(record.get("files", []))))

    old, new = table(recorded, "sizes"), table(current, "sizes")
    changes = []
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    kept = sorted(set(old) & set(new))
    resized = [k for k in kept if old[k] != new[k]]
    old_hash, new_hash = table(recorded, "hashes"), table(current, "hashes")
    edited = [k for k in kept if k not in resized and None not in (old_hash[k], new_hash[k]) and old_hash[k] != new_hash[k]]
    old_caption, new_caption = table(recorded, "captions"), table(current, "captions")
    recaptioned = [k for k in kept if None not in (old_caption[k], new_caption[k]) and old_caption[k] != new_caption[k]]
    if added:
        changes.append(f"{_count(len(added), 'file')} added ({_names(added)})")
    if removed:
        changes.append(f"{_count(len(removed), 'file')} removed ({_names(removed)})")
    if resized:
        changes.append(f"{_count(len(resized), 'file')} changed size ("
                       + _names([f"{k}: {old[k]} -> {new[k]} bytes" for k in resized]) + ")")
    if edited:
        changes.append(f"{_count(len(edited), 'file')} changed content at the same size ({_names(edited)})")
    if recaptioned:
        changes.append(f"{_count(len(recaptioned), 'caption')} changed ({_names(recaptioned)})")
    return changes


def model_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The base model differs: by weights hash where both records have one (a moved or renamed copy
    of the same weights is the same model); otherwise by what it is: kind and location (a hub id,
    a folder, a file), or the name where an old record has no location."""
    old, new = recorded.get("sha256"), current.get("sha256")
    name = current.get("name", "?")
    if old and new:
        if old != new:
            return [f"base model {name} has hash {new[:10]}, the run started from {old[:10]}"]
        return []
    if not recorded:
        return []
    def where(ident: dict[str, Any]) -> tuple[Any, ...]:
        return (ident.get("kind"), ident.get("location")) if "location" in recorded else (ident.get("name"),)
    if where(recorded) != where(current):
        was = recorded.get("location") or recorded.get("name", "?")
        now = current.get("location") or name
        return [f"base model is {now}, the run started from {was}"]
    return []


def check(run_path: Any, meta: dict[str, Any], dataset: dict[str, Any], model: dict[str, Any],
          force: bool) -> list[str]:
    """Raise ResumeRefused naming every change, unless `force`; returns the changes."""
    changes = []
    if "dataset" in meta:  # runs started before the record existed have nothing to compare
        changes += [f"dataset: {c}" for c in dataset_changes(meta["dataset"], dataset)]
    changes += model_changes(meta.get("base_model", {}), model)
    if changes and not force:
        raise ResumeRefused(
            f"{run_path}: cannot resume: the inputs changed since this run started: " + "; ".join(changes)
            + ". The data order depends on the file list, so this would silently be another run. Restore them, "
            f"start a new run, or resume anyway with `sdstudio train --resume {run_path} --force` "
            "(recorded in run.toml).")
    return changes


def forced_note(step: int, changes: list[str]) -> str:
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S')} resumed at step {step} with --force: " + "; ".join(changes)
