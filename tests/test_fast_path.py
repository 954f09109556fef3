"""The fast training path (cached latents and text embeddings, micro-batches folded into one
forward pass) follows the same loss curve as the plain path (encode every step, one pass per
micro-batch). Tolerance: 1e-4 relative per step over 50 steps, fp32 on CPU."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import tiny_train_values
from sdstudio.core.config import build_config
from sdstudio.core.paths import data_dir, demo_model_dir
from sdstudio.core.training.trainer import train


def test_fast_and_plain_paths_give_the_same_loss_curve(tiny_model_dir, tmp_path):
    demo = demo_model_dir()
    model, resolution = (demo, 64) if (demo / "model_index.json").exists() else (tiny_model_dir, 32)
    shapes = data_dir() / "shapes"
    subset = tmp_path / "shapes"
    subset.mkdir()
    rows = [json.loads(line) for line in (shapes / "metadata.jsonl").read_text().splitlines()[:12]]
    for row in rows:
        shutil.copy(shapes / row["file_name"], subset / row["file_name"])
    (subset / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves = {}
    for fast in (True, False):
        values = tiny_train_values(model, tmp_path / f"fast-{fast}", train_data_dir=str(subset),
                                   resolution=resolution, max_train_steps=50, train_batch_size=2,
                                   gradient_accumulation_steps=2, random_flip=True, validation_steps=1000,
                                   checkpointing_steps=1000, learning_rate=1e-3, fast_path=fast, cache_latents=fast,
                                   snr_gamma=5.0)
        run = train(build_config(values))
        curves[fast] = [m["loss"] for m in run.metrics()]
    assert len(curves[True]) == 50
    assert curves[True] == pytest.approx(curves[False], rel=1e-4, abs=1e-6)
