"""The run directory: the contract between trainer, CLI and TUI.

    <run>/run.toml          resolved config + sdstudio version + base-model identity
    <run>/status.json       state, step, total, error, pid, updated
    <run>/metrics.jsonl     one object per logged step; a validation-loss row (val_loss) per checkpoint
    <run>/samples/          validation PNGs + index.jsonl
    <run>/checkpoints/step-NNNNNN/pytorch_lora_weights.safetensors (+ state/: Accelerate's state)
    <run>/exports/          kohya-format files for A1111/ComfyUI
    <run>/pending.json      optional work a stop deferred: {"val_loss": [steps], "samples": [steps]}

Anything that shows a run rebuilds its view from here, so every write is atomic and
readers tolerate a torn last line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.full.layout import is_full_checkpoint
from sdstudio.core.io import atomic
from sdstudio.core.io.toml_text import dumps_toml

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
_CKPT_RE = re.compile(r"^step-(\d{6,})$")

RUNNING, STOPPED, FINISHED, FAILED = "running", "stopped", "finished", "failed"
# status.json is rewritten by the trainer loop and by its command reader (run_control.py): the
# read-modify-write of both goes through this lock so neither loses the other's fields.
_STATUS_LOCK = threading.Lock()
KEPT_STATUS_FIELDS = ("commands", "reader", "memory")  # written by the command reader / the memory watch, kept by every status write


@dataclass(frozen=True)
class SampleRecord:
    step: int
    prompt_index: int
    prompt: str
    seed: int
    path: Path


@dataclass(frozen=True)
class CheckpointRecord:
    step: int
    path: Path

    @property
    def weights(self) -> Path:
        return self.path / LORA_WEIGHTS_NAME

    @property
    def state_dir(self) -> Path:
        return self.path / "state"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line from a crash mid-write
    return rows


class RunDir:
    """Read and write one run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # layout
    @property
    def run_toml(self) -> Path:
        return self.path / "run.toml"

    @property
    def status_json(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_jsonl(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def samples_index(self) -> Path:
        return self.samples_dir / "index.jsonl"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def exports_dir(self) -> Path:
        return self.path / "exports"

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.run_toml.exists()

    # run.toml
    def write_config(self, config: dict[str, Any], meta: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.run_toml, dumps_toml({**config, "sdstudio": meta}))

    def read_run_toml(self) -> dict[str, Any]:
        with open(self.run_toml, "rb") as fh:
            return tomllib.load(fh)

    def config(self) -> dict[str, Any]:
        """The training config fields (without the [sdstudio] table)."""
        data = self.read_run_toml()
        data.pop("sdstudio", None)
        return data

    def meta(self) -> dict[str, Any]:
        return self.read_run_toml().get("sdstudio", {})

    # status.json
    def write_status(self, state: str, step: int, total: int, error: str | None = None, **extra: Any) -> None:
        """The whole status (the command reader's fields kept); `extra` adds fields such as
        `stopping` (a stop is saving its checkpoint: see `settle`) or the run's `timing`."""
        with _STATUS_LOCK:
            old = self.status()
            kept = {k: old[k] for k in KEPT_STATUS_FIELDS if k in old}
            if state == RUNNING and old.get("stopping"):
                kept["stopping"] = True  # a stop is under way: only the end state clears it
            atomic.write_json(
                self.status_json,
                {**kept, "state": state, "step": step, "total": total, "error": error, "pid": os.getpid(),
                 "updated": time.time(), **extra},
            )

    def update_status(self, **fields: Any) -> None:
        """Change some fields of status.json, keeping the rest (used by the command reader)."""
        with _STATUS_LOCK:
            atomic.write_json(self.status_json, {**self.status(), **fields})

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {"state": "unknown", "step": 0, "total": 0, "error": None, "pid": None}

    def mark_stopping(self) -> None:
        """A stop is under way (the hang-up's, before its deadline may end the trainer mid-step): if
        the process is gone before it writes "stopped", `settle` stops the run at its newest checkpoint."""
        with _STATUS_LOCK:
            st = self.status()
            if st.get("state") in (RUNNING, "starting") and not st.get("stopping"):
                atomic.write_json(self.status_json, {**st, "stopping": True, "updated": time.time()})

    def settle(self) -> bool:
        """Repair a stop that a kill cut off between its checkpoint and its status (a hang-up's
        deadline, a second kill): the trainer marked the status `stopping` before saving and is
        gone now, so the run is stopped at its newest whole checkpoint. Readers call this when
        they open a run, so a clean stop is never shown as crashed. True if it changed the status."""
        from sdstudio.core.runs.lock import live_trainer

        st = self.status()
        if st.get("state") not in (RUNNING, "starting") or not st.get("stopping"):
            return False
        if live_trainer(self.path, st) is not None:
            return False  # still stopping: its own status write follows
        self.recover_checkpoints()
        latest = self.latest_checkpoint()
        with _STATUS_LOCK:
            now = self.status()
            if now.get("updated") != st.get("updated"):
                return False  # somebody wrote meanwhile (a new trainer): leave it to them
            atomic.write_json(self.status_json, {**now, "state": STOPPED, "step": latest.step if latest else 0,
                                                 "stopping": False, "settled": time.time()})
        return True

    def is_alive(self) -> bool:
        """True if the status says running and its trainer still exists (on this machine): the
        holder of the run's lock, or, for a run without a lock file, the recorded pid."""
        from sdstudio.core.runs.lock import live_trainer

        st = self.status()
        return st.get("state") == RUNNING and live_trainer(self.path, st) is not None

    # metrics.jsonl
    def append_metrics(self, row: dict[str, Any]) -> None:
        atomic.append_line(self.metrics_jsonl, json.dumps(row, sort_keys=True))

    def metrics(self) -> list[dict[str, Any]]:
        """The training-step rows (loss, lr, speed); validation-loss rows are `validation_losses()`."""
        return [r for r in _read_jsonl(self.metrics_jsonl) if "val_loss" not in r]

    def validation_losses(self) -> dict[int, float]:
        """step -> validation loss (the latest row of each step wins)."""
        out: dict[int, float] = {}
        for r in _read_jsonl(self.metrics_jsonl):
            try:
                out[int(r["step"])] = float(r["val_loss"])
            except (KeyError, TypeError, ValueError):
                continue
        return out

    @property
    def scores_jsonl(self) -> Path:
        return self.path / "scores.jsonl"

    # pending.json: optional work a stop left for later (`sdstudio score`, or the resume)
    @property
    def pending_json(self) -> Path:
        return self.path / "pending.json"

    def pending(self) -> dict[str, list[int]]:
        """kind ("val_loss", "samples") -> checkpoint steps still waiting for it."""
        try:
            data = json.loads(self.pending_json.read_text(encoding="utf-8"))
            return {str(k): sorted({int(s) for s in v}) for k, v in data.items() if isinstance(v, list)}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def set_pending(self, kind: str, step: int, waiting: bool = True) -> None:
        """Mark (or, with waiting=False, clear) `kind` as pending at `step`; writes only on a change."""
        with _STATUS_LOCK:
            data = self.pending()
            before = set(data.get(kind, []))
            steps = before | {step} if waiting else before - {step}
            if steps == before:
                return
            data[kind] = sorted(steps)
            atomic.write_json(self.pending_json, {k: v for k, v in data.items() if v})

    # samples
    def sample_path(self, step: int, prompt_index: int, seed: int) -> Path:
        return self.samples_dir / f"step-{step:06d}_p{prompt_index:02d}_s{seed}.png"

    def add_sample(self, step: int, prompt_index: int, prompt: str, seed: int, image: Any) -> Path:
        path = self.sample_path(step, prompt_index, seed)
        atomic.save_image(image, path)
        row = {"step": step, "prompt_index": prompt_index, "prompt": prompt, "seed": seed, "file": path.name}
        atomic.append_line(self.samples_index, json.dumps(row, sort_keys=True))
        return path

    def samples(self) -> list[SampleRecord]:
        """Every indexed sample whose file exists; a later entry for the same slot wins."""
        latest: dict[tuple[int, int, int], SampleRecord] = {}
        for row in _read_jsonl(self.samples_index):
            try:
                rec = SampleRecord(int(row["step"]), int(row["prompt_index"]), str(row["prompt"]), int(row["seed"]),
                                   self.samples_dir / str(row["file"]))
            except (KeyError, ValueError, TypeError):
                continue
            if rec.path.exists():
                latest[(rec.step, rec.prompt_index, rec.seed)] = rec
        return sorted(latest.values(), key=lambda r: (r.step, r.prompt_index, r.seed))

    # checkpoints
    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{step:06d}"

    def checkpoints(self) -> list[CheckpointRecord]:
        """Complete checkpoints (a LoRA file, or a full fine-tune's model folder), oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for child in self.checkpoints_dir.iterdir():
            m = _CKPT_RE.match(child.name)
            if m and child.is_dir() and ((child / LORA_WEIGHTS_NAME).exists() or is_full_checkpoint(child)):
                found.append(CheckpointRecord(int(m.group(1)), child))
        return sorted(found, key=lambda c: c.step)

    def latest_checkpoint(self) -> CheckpointRecord | None:
        cps = self.checkpoints()
        return cps[-1] if cps else None

    def checkpoint(self, step: int | None = None) -> CheckpointRecord:
        """The checkpoint at `step` (the latest when None); FileNotFoundError names what exists."""
        cps = self.checkpoints()
        if not cps:
            raise FileNotFoundError(f"{self.path}: no checkpoints yet")
        if step is None:
            return cps[-1]
        for cp in cps:
            if cp.step == step:
                return cp
        steps = ", ".join(str(c.step) for c in cps)
        raise FileNotFoundError(f"{self.path}: no checkpoint at step {step} (have: {steps})")

    def prune_checkpoints(self, limit: int | None, keep: set[int] | None = None) -> list[int]:
        """Delete the oldest checkpoints beyond `limit`, never a favourite, one of `keep` nor the
        newest (resume needs it); returns the removed steps."""
        if not limit or limit <= 0:
            return []
        cps = self.checkpoints()
        keep = self.favourites() | set(keep or ()) | ({cps[-1].step} if cps else set())
        candidates = [c for c in cps if c.step not in keep]
        removed = []
        for victim in candidates[: max(0, len(cps) - limit)]:
            shutil.rmtree(victim.path, ignore_errors=True)
            removed.append(victim.step)
        return removed

    # favourites.json: checkpoint steps a person marked (every viewer of the run sees them)
    @property
    def favourites_json(self) -> Path:
        return self.path / "favourites.json"

    def favourites(self) -> set[int]:
        try:
            data = json.loads(self.favourites_json.read_text(encoding="utf-8"))
            return {int(s) for s in data.get("steps", [])}
        except (OSError, ValueError, TypeError, AttributeError):
            return set()

    def set_favourites(self, steps: set[int]) -> None:
        atomic.write_json(self.favourites_json, {"steps": sorted(steps)})

    def recover_checkpoints(self) -> None:
        """Finish a checkpoint swap a kill interrupted (see training/checkpoint.py): a folder set
        aside (`.old`) whose replacement never arrived goes back; staging folders go."""
        if not self.checkpoints_dir.is_dir():
            return
        for child in sorted(self.checkpoints_dir.iterdir()):
            if child.name.endswith(".old") and _CKPT_RE.match(child.name[:-4]):
                final = child.with_name(child.name[:-4])
                if (final / LORA_WEIGHTS_NAME).exists() or is_full_checkpoint(final):
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    shutil.rmtree(final, ignore_errors=True)
                    os.replace(child, final)
            elif child.name.endswith(".tmp") and _CKPT_RE.match(child.name[:-4]):
                shutil.rmtree(child, ignore_errors=True)

    def truncate_after(self, step: int) -> None:
        """Forget metrics and samples logged after `step` (used when resuming from it)."""
        self.recover_checkpoints()
        rows = [r for r in _read_jsonl(self.metrics_jsonl) if int(r.get("step", 0)) <= step]
        atomic.write_text(self.metrics_jsonl, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        if self.samples_index.exists():
            keep = [r for r in _read_jsonl(self.samples_index) if int(r.get("step", 0)) <= step]
            atomic.write_text(self.samples_index, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
        pending = self.pending()
        if any(s > step for steps in pending.values() for s in steps):
            atomic.write_json(self.pending_json, {k: [s for s in v if s <= step] for k, v in pending.items()})
        for cp_dir in self.checkpoints_dir.glob("step-*") if self.checkpoints_dir.is_dir() else []:
            m = _CKPT_RE.match(cp_dir.name)
            if m and int(m.group(1)) > step:
                shutil.rmtree(cp_dir, ignore_errors=True)


def list_runs(root: str | os.PathLike[str], unstarted: bool = False) -> list[RunDir]:
    """Run directories directly under `root`, newest first. With `unstarted`, also the folders of
    trainers that have not written run.toml yet (a status.json only: starting, or refused)."""
    base = Path(root)
    if not base.is_dir():
        return []
    marks = ("run.toml", "status.json") if unstarted else ("run.toml",)
    stamped = []
    for p in base.iterdir():
        for mark in marks:
            try:
                stamped.append((p.joinpath(mark).stat().st_mtime, RunDir(p)))
                break
            except OSError:
                continue
    return [run for _, run in sorted(stamped, key=lambda t: t[0], reverse=True)]
