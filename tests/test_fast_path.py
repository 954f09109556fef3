"""The fast training path follows the same loss curve as the plain path, option by option:
`cache_latents` (VAE latents and text embeddings computed once) and `fast_path` (the trainer's
faster step, e.g. micro-batches folded into one forward pass) each on their own and together, in
fp32 and in bf16 on the CPU. Whatever a fast option changes in *how* a step is computed, the
losses it reports must be those of the plain path.
Tolerances: fp32 1e-4 relative per step over 20 steps; bf16 (each option alone) 2e-2 per step over 10 steps (its
rounding differs between the paths: measured up to 0.7 %) and 5e-3 on average."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import tiny_train_values
from sdstudio.core.paths import data_dir, demo_model_dir

OPTIONS = {"cache_latents": dict(fast_path=False, cache_latents=True),
           "fast_path": dict(fast_path=True, cache_latents=False),
           "both": dict(fast_path=True, cache_latents=True)}
PLAIN = dict(fast_path=False, cache_latents=False)

_TRAIN_CURVES = """
import json, sys
from sdstudio.core.config import build_config
from sdstudio.core.training.trainer import train
curves = {name: [m["loss"] for m in train(build_config(values)).metrics()] for name, values in json.loads(sys.argv[1]).items()}
print(json.dumps(curves))
"""


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    """(model, resolution, a 12-picture captioned subset of data/shapes, an output folder)."""
    tmp = tmp_path_factory.mktemp("fast-path")
    demo = demo_model_dir()
    model, resolution = (demo, 64) if (demo / "model_index.json").exists() else (tiny_model_dir, 32)
    shapes = data_dir() / "shapes"
    subset = tmp / "shapes"
    subset.mkdir()
    rows = [json.loads(line) for line in (shapes / "metadata.jsonl").read_text().splitlines()[:12]]
    for row in rows:
        shutil.copy(shapes / row["file_name"], subset / row["file_name"])
    (subset / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return model, resolution, subset, tmp


def _values(setup, name: str, steps: int, mixed_precision: str, options: dict) -> dict:
    model, resolution, subset, tmp = setup
    return tiny_train_values(model, tmp / name, train_data_dir=str(subset), resolution=resolution,
                             max_train_steps=steps, train_batch_size=2, gradient_accumulation_steps=2,
                             random_flip=True, validation_steps=1000, checkpointing_steps=1000, learning_rate=1e-3,
                             snr_gamma=5.0, mixed_precision=mixed_precision, **options)


def _curve(setup, name: str, options: dict) -> list[float]:
    from sdstudio.core.config import build_config
    from sdstudio.core.training.trainer import train

    run = train(build_config(_values(setup, name, 20, "no", options)))
    return [m["loss"] for m in run.metrics()]


@pytest.fixture(scope="module")
def plain_fp32(setup) -> list[float]:
    return _curve(setup, "plain-fp32", PLAIN)


@pytest.mark.parametrize("option", list(OPTIONS))
def test_each_fast_option_gives_the_plain_fp32_loss_curve(setup, plain_fp32, option):
    curve = _curve(setup, f"{option}-fp32", OPTIONS[option])
    assert len(curve) == len(plain_fp32) == 20
    assert curve == pytest.approx(plain_fp32, rel=1e-4, abs=1e-6)


def test_bf16_on_cpu_each_fast_option_gives_the_plain_loss_curve(setup, plain_fp32):
    """bf16 runs in a child process: Accelerate fixes the mixed precision once per process."""
    import numpy as np

    runs = {"plain": PLAIN, "cache_latents": OPTIONS["cache_latents"], "fast_path": OPTIONS["fast_path"]}
    values = {name: _values(setup, f"{name}-bf16", 10, "bf16", options) for name, options in runs.items()}
    done = subprocess.run([sys.executable, "-c", _TRAIN_CURVES, json.dumps(values, default=str)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    curves = {k: np.array(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    plain = curves["plain"]
    assert len(plain) == 10
    assert np.abs(plain - np.array(plain_fp32[:10])).max() > 1e-4  # bf16 is really in use
    for option in ("cache_latents", "fast_path"):
        rel = np.abs(curves[option] - plain) / np.abs(plain)
        assert rel.max() < 2e-2 and rel.mean() < 5e-3, (option, rel.round(4).tolist())
