"""Shared fixtures: a tiny random-weight SD pipeline built with the real diffusers classes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("SDSTUDIO_IMAGES", "halfcell")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight SD 1.x-architecture diffusers folder (32 px images, 16 px latents)."""
    from sdstudio.core.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-model") / "tiny-sd", seed=0)


@pytest.fixture()
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run outputs go to a temporary folder, never into the project's models/."""
    root = tmp_path / "runs"
    monkeypatch.setenv("SDSTUDIO_RUNS", str(root))
    return root
