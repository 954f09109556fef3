"""Where a run lives and what its run.toml records: the run folder chosen, the config and the
inputs' identity written (or, on a forced resume, the change recorded), a run's config read back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.errors import ConfigError
from sdstudio.core.paths import runs_root
from sdstudio.core.runs.naming import default_run_name
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training import resume_guard


def data_root(cfg: TrainConfig) -> Path:
    return Path((cfg.train_data_dir if cfg.resolved_method == "text2image" else cfg.instance_data_dir) or "")


def cpu_process_group() -> bool:
    """True when several processes were launched on a machine without a GPU (`accelerate launch
    --multi_gpu` or torchrun there; `accelerate launch --cpu` itself starts one process unless
    with mpirun): Accelerate joins them with gloo only when told cpu=True; otherwise each
    process would silently train alone."""
    import os

    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def choose_run_path(cfg: TrainConfig, resume: Path | None) -> str:
    """The run folder: the one resumed, else output_dir or a new name under the runs root."""
    if resume:
        return str(resume)
    path = Path(cfg.output_dir) if cfg.output_dir else runs_root() / (cfg.run_name or default_run_name(cfg))
    if RunDir(path).exists() and RunDir(path).checkpoints():
        raise ConfigError("output_dir", f"{path} already holds a run with checkpoints; resume it with "
                          f"`sdstudio train --resume {path}` or choose another output_dir")
    return str(path)


def record_run(run: RunDir, cfg: TrainConfig, meta: dict[str, Any], resumed: bool, forced: list[str]) -> None:
    """A new run writes run.toml; a forced resume records what changed and the new identity."""
    if not resumed:
        run.write_config(cfg.to_dict(), meta)
    elif forced:
        old = run.meta()
        latest = run.latest_checkpoint()
        notes = list(old.get("forced_resumes", [])) + [resume_guard.forced_note(latest.step if latest else 0, forced)]
        run.write_config(run.config(), {**old, **meta, "forced_resumes": notes})


def record_prediction_type(run: RunDir, prediction_type: str, resumed: bool, force: bool) -> None:
    """The loaded scheduler's prediction type joins the base model's identity in run.toml (known
    only once loaded: a single file's is decided from evidence in it, see core/prediction_type.py);
    export writes its metadata from there. A resume that would train another prediction type than
    the run started with is refused, as another base model is."""
    meta = run.meta()
    base = dict(meta.get("base_model", {}))
    old = base.get("prediction_type")
    if old == prediction_type:
        return
    if resumed and old and not force:
        raise resume_guard.ResumeRefused(
            f"{run.path}: cannot resume: the base model now predicts {prediction_type}, the run started with {old}. "
            f"Resume anyway with `sdstudio train --resume {run.path} --force`.")
    base["prediction_type"] = prediction_type
    run.write_config(run.config(), {**meta, "base_model": base})
