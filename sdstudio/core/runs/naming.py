"""Which folder a run lives in and what config it was started with: its name, its path under the
runs root, and its run.toml read back for a resume."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.paths import runs_root
from sdstudio.core.runs.run_dir import RunDir


def default_run_name(cfg: Any, stem: str | None = None) -> str:
    """`<method>-<YYYYmmdd-HHMMSS>`, or `<stem>-…` (a queued config's file name)."""
    return f"{stem or cfg.resolved_method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_path_for(cfg: Any, resume: str | os.PathLike[str] | None = None) -> Path:
    """The run directory a training will write (naming the run now if the config does not)."""
    if resume:
        return Path(resume)
    if cfg.output_dir:
        return Path(cfg.output_dir)
    if not cfg.run_name:
        cfg.run_name = default_run_name(cfg)
    return runs_root() / cfg.run_name


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> Any:
    """The config a run was started with (its run.toml, a `TrainConfig`), with optional overrides."""
    from sdstudio.core.config import load_config

    run = RunDir(run_dir)
    if not run.exists():
        raise SdstudioError(f"{run_dir}: not a run directory (no run.toml)")
    return load_config(run.run_toml, overrides)
