"""Where the built-in demo model, the sample data and run outputs live."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL_NAME = "demo"


def demo_model_dir() -> Path:
    """The shipped demo base model (a diffusers folder)."""
    return Path(os.environ.get("SDSTUDIO_DEMO_MODEL", PROJECT_ROOT / "models" / "demo"))


def data_dir() -> Path:
    """Sample datasets and configs the project ships."""
    return PROJECT_ROOT / "data"


def runs_root() -> Path:
    """Default parent of run directories: $SDSTUDIO_RUNS, else `models/` of the project."""
    env = os.environ.get("SDSTUDIO_RUNS")
    return Path(env) if env else PROJECT_ROOT / "models"
