"""Resume only what was started: the dataset and the base model must be the ones run.toml recorded.

The data order is a function of the number of examples (and their order), so a folder that
gained, lost or changed files gives another run under the same name; another base model
gives a meaningless one. Both are refused with a message naming the change; `--force`
resumes anyway and records what changed in run.toml.
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


def dataset_record(examples: list[Example], root: Path) -> dict[str, Any]:
    """The training files as run.toml records them: paths relative to the data folder, and sizes."""
    return {"files": [ex.path.relative_to(root).as_posix() if ex.path.is_relative_to(root) else ex.path.as_posix()
                      for ex in examples],
            "sizes": [ex.path.stat().st_size for ex in examples]}


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def dataset_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two dataset records (empty when equal)."""
    old = dict(zip(recorded.get("files", []), recorded.get("sizes", [])))
    new = dict(zip(current["files"], current["sizes"]))
    changes = []
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    resized = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    if added:
        changes.append(f"{len(added)} file{'s' if len(added) > 1 else ''} added ({_names(added)})")
    if removed:
        changes.append(f"{len(removed)} file{'s' if len(removed) > 1 else ''} removed ({_names(removed)})")
    if resized:
        changes.append(f"{len(resized)} file{'s' if len(resized) > 1 else ''} changed size ("
                       + _names([f"{k}: {old[k]} -> {new[k]} bytes" for k in resized]) + ")")
    return changes


def model_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    old, new = recorded.get("sha256"), current.get("sha256")
    if old and new and old != new:
        return [f"base model {current.get('name', '?')} has hash {new[:10]}, the run started from {old[:10]}"]
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
