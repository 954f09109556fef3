"""A full fine-tune's checkpoint named as a model: which folder, which weights (EMA or raw), which base.

Every place that takes a model (Generate, Merge, `sdstudio score`, export) names a full checkpoint
the same ways:

    RUN/checkpoints/step-000400          that checkpoint; its EMA weights when it has them
    RUN/checkpoints/step-000400/ema      its EMA weights      .../model: its raw weights
    RUN                                  a full run: its latest checkpoint
    RUN@400                              a full run at step 400

The components a checkpoint does not hold (the VAE, frozen text encoders) are the base model's,
as run.toml names it. Only `stat` and run.toml are read here: no weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sdstudio.core.errors import ModelError
from sdstudio.core.full.layout import EMA_DIR, MODEL_DIR, has_ema, is_full_checkpoint, model_dir, trained_components
from sdstudio.core.runs.run_dir import RunDir


@dataclass(frozen=True)
class FullCheckpoint:
    """One full checkpoint and the weights chosen from it."""

    path: Path  # the step-NNNNNN folder
    step: int
    ema: bool  # the EMA weights (ema/) rather than the raw ones (model/)
    run: RunDir | None  # the run it belongs to (None for a checkpoint folder copied out of its run)

    @property
    def weights_dir(self) -> Path:
        return model_dir(self.path, self.ema)

    @property
    def components(self) -> dict[str, Path]:
        """Component name -> folder of the weights this checkpoint holds (the rest are the base's)."""
        return trained_components(self.path, self.ema)

    @property
    def name(self) -> str:
        run = self.run.name if self.run is not None else self.path.parent.name
        return f"{run}-step{self.step}" + ("-ema" if self.ema else "")

    def base_spec(self) -> str:
        """The base model as run.toml names it; when that is a path that no longer exists here (a
        relative path trained from another folder), the location the trainer recorded."""
        if self.run is None:
            raise ModelError(f"{self.path}: a full checkpoint outside its run folder (no run.toml two folders up); "
                             "its untrained components come from the run's base model, so keep it inside RUN/checkpoints/")
        spec = str(self.run.config().get("pretrained_model_name_or_path") or "")
        recorded = self.run.meta().get("base_model") or {}
        location = str(recorded.get("location") or "")
        if (recorded.get("kind") in ("folder", "single_file") and location and Path(location).exists()
                and not Path(os.path.expanduser(spec)).exists()):
            return location
        return spec


def _step_of(folder: Path) -> int:
    digits = folder.name.removeprefix("step-")
    return int(digits) if digits.isdigit() else 0


def _run_of(checkpoint: Path) -> RunDir | None:
    run = RunDir(checkpoint.parent.parent)
    return run if run.exists() else None


def _choose(checkpoint: Path, ema: bool | None) -> FullCheckpoint:
    if ema is None:
        ema = has_ema(checkpoint)
    elif ema and not has_ema(checkpoint):
        raise ModelError(f"{checkpoint}: this checkpoint has no EMA weights (the run did not use use_ema); "
                         "drop --ema, or pass --no-ema for its trained weights")
    return FullCheckpoint(checkpoint, _step_of(checkpoint), ema, _run_of(checkpoint))


def is_full_run(run: RunDir) -> bool:
    try:
        return run.exists() and run.config().get("training_method") == "full"
    except (OSError, ValueError):
        return False


def find_full_checkpoint(spec: str | os.PathLike[str], ema: bool | None = None) -> FullCheckpoint | None:
    """The full checkpoint `spec` names (see the module docstring), or None when `spec` names
    something else (a model folder, a file, a LoRA run). ModelError for a full run or checkpoint
    that lacks what was asked (no such step, no EMA)."""
    text = os.path.expanduser(str(spec).strip())
    path = Path(text)
    if path.is_dir():
        if is_full_checkpoint(path):
            return _choose(path, ema)
        if path.name in (MODEL_DIR, EMA_DIR) and is_full_checkpoint(path.parent):
            if not (path / "unet" / "config.json").is_file():
                raise ModelError(f"{path}: no weights in this folder (expected {path.name}/unet/)")
            chosen = path.name == EMA_DIR
            if ema is not None and ema != chosen:
                raise ModelError(f"{path}: names the {'EMA' if chosen else 'raw'} weights, but "
                                 f"{'--ema' if ema else '--no-ema'} asks for the other; name the step folder instead")
            return FullCheckpoint(path.parent, _step_of(path.parent), chosen, _run_of(path.parent))
        run = RunDir(path)
        return full_run_checkpoint(run, None, ema) if is_full_run(run) else None
    head, sep, tail = text.rpartition("@")
    if sep and tail.isdigit() and Path(head).is_dir():
        run = RunDir(head)
        if is_full_run(run):
            return full_run_checkpoint(run, int(tail), ema)
        raise ModelError(f"{text}: RUN@STEP names a checkpoint of a full fine-tune run, and {head} is not one "
                         "(a LoRA run's checkpoints are LoRAs: pick the run's checkpoint file instead)")
    return None


def require_full_checkpoint(spec: FullCheckpoint | str | os.PathLike[str], ema: bool | None = None) -> FullCheckpoint:
    """`find_full_checkpoint`, with a ModelError when `spec` names something else."""
    if isinstance(spec, FullCheckpoint):
        return spec
    found = find_full_checkpoint(spec, ema)
    if found is None:
        raise ModelError(f"{spec}: not a full fine-tune checkpoint (expected RUN, RUN@STEP or "
                         "RUN/checkpoints/step-N with model/unet/ inside)")
    return found


def full_run_checkpoint(run: RunDir, step: int | None, ema: bool | None = None) -> FullCheckpoint:
    """A full run's checkpoint at `step` (the latest when None); ModelError names the steps there are."""
    try:
        record = run.checkpoint(step)
    except FileNotFoundError as exc:
        raise ModelError(str(exc)) from None
    return _choose(record.path, ema)
