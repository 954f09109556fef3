"""Shared fixtures: a tiny random-weight SD pipeline built with the real diffusers classes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("SDSTUDIO_IMAGES", "halfcell")
# Tiny models are bound by per-operation overhead: one thread is as fast as two, and two threads
# spin-wait badly whenever the other core is busy (a tiny linear layer went from 0.04 ms to 8 ms).
# Subprocesses inherit this through OMP_NUM_THREADS. Tests that want both cores say so.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The studio trains in the background by default on an SSH login (settings: detach_runs): the
# tests must not depend on whether the machine running them was reached over SSH.
for _var in ("SSH_CONNECTION", "SSH_TTY", "SSH_CLIENT"):
    os.environ.pop(_var, None)
# $SDSTUDIO_HOME wins over the tests' $SDSTUDIO_RUNS: a developer's own must not receive test runs.
os.environ.pop("SDSTUDIO_HOME", None)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # optional real-world files beside a checkout; the suite never needs them
LEGACY_SEED_LORA = SHARED / "seed-data" / "legacy-lora" / "dog-attnprocs-pytorch_lora_weights.bin"


def needs_shared(path: Path) -> Callable[[Callable], Callable]:
    """Mark a test `shared` (CI runs these in place, after the suite ran from a clean copy) and skip it,
    with the reason, where `path` under ../shared is not present."""
    def mark(fn):
        fn = pytest.mark.shared(fn)
        reason = f"../{path.relative_to(REPO.parent).as_posix()} is not beside the repository (optional real-world file)"
        return pytest.mark.skipif(not path.exists(), reason=reason)(fn)
    return mark


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight SD 1.x-architecture diffusers folder (32 px images, 16 px latents)."""
    from sdstudio.demo.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-model") / "tiny-sd", seed=0)


TRAINED_RANK, TRAINED_ALPHA, TRAINED_LR = 4, 8.0, 1e-2


@pytest.fixture(scope="session")
def trained_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One real run of the trainer per test session, for every test that reads checkpoints "as the
    trainer writes them" (export, generate, studio): DreamBooth on 4 red-disc pictures, UNet and
    text-encoder LoRA of rank 4 with alpha 8, checkpoints at steps 2 and 4 in a run named `shapes`.
    The learning rate is high so that the LoRA visibly changes pictures after 2 steps.
    Read-only for the tests: a test that writes into a run (an export, say) copies the folder first."""
    from sdstudio.core.config import build_config
    from sdstudio.core.training.trainer import train

    root = tmp_path_factory.mktemp("trained")
    draw_shape_images(root / "instance", 4, (230, 30, 30))
    cfg = build_config(tiny_train_values(
        tiny_model_dir, root / "runs" / "shapes", instance_data_dir=str(root / "instance"),
        instance_prompt="a photo of sks dog", train_text_encoder=True, rank=TRAINED_RANK, lora_alpha=TRAINED_ALPHA,
        learning_rate=TRAINED_LR, max_train_steps=4, checkpointing_steps=2, validation_steps=100))
    run = train(cfg)
    assert [c.step for c in run.checkpoints()] == [2, 4]
    return run


@pytest.fixture(autouse=True)
def _same_home_in_snapshots(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header names the home folder, a temporary one in tests: snapshots show a fixed one, and the
    Train form's memory estimate the same device (a CPU) on any machine."""
    if "snap_compare" in request.fixturenames:
        monkeypatch.setattr("sdstudio.tui.app.home_label", lambda: "~/sdstudio")
        monkeypatch.setattr("sdstudio.core.training.memory_estimate.likely_device", lambda: "cpu")


@pytest.fixture()
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run outputs go to a temporary folder, never into the project's models/."""
    root = tmp_path / "runs"
    monkeypatch.setenv("SDSTUDIO_RUNS", str(root))
    return root


def draw_shape_images(folder: Path, count: int, colour: tuple[int, int, int], size: int = 40,
                      shape: str = "ellipse") -> list[Path]:
    """Small distinct PNGs of one coloured shape at varied positions on varied backgrounds."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        im = Image.new("RGB", (size, size), (30 + 40 * (i % 5), 90, 160 + 10 * (i % 4)))
        draw = ImageDraw.Draw(im)
        box = (4 + i % 7, 5 + (i * 3) % 9, size // 2 + 8 + i % 7, size // 2 + 9 + (i * 3) % 9)
        getattr(draw, shape)(box, fill=colour)
        path = folder / f"{i:03d}.png"
        im.save(path)
        paths.append(path)
    return paths


@pytest.fixture()
def instance_dir(tmp_path: Path) -> Path:
    """A DreamBooth instance folder of 4 images (no captions)."""
    draw_shape_images(tmp_path / "instance", 4, (230, 30, 30))
    return tmp_path / "instance"


@pytest.fixture()
def captioned_dir(tmp_path: Path) -> Path:
    """A text-to-image folder of 6 images captioned in metadata.jsonl."""
    import json

    folder = tmp_path / "captioned"
    red = draw_shape_images(folder / "red", 3, (230, 30, 30))
    blue = draw_shape_images(folder / "blue", 3, (30, 30, 230), shape="rectangle")
    lines = [json.dumps({"file_name": p.relative_to(folder).as_posix(), "text": f"a {c} shape"})
             for c, paths in (("red", red), ("blue", blue)) for p in paths]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def default_signals() -> None:
    """A child's `preexec_fn`: SIGINT, SIGTERM and SIGHUP at their defaults, as a shell gives a foreground
    job. A test process started under nohup, or with `&` from a script, inherits them ignored, and a
    test that sends one of them must not depend on that."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def tiny_train_values(model_dir: Path, out: Path, **extra: object) -> dict[str, object]:
    """Config values for a seconds-long run on the tiny model."""
    values: dict[str, object] = {
        "pretrained_model_name_or_path": str(model_dir),
        "resolution": 32,
        "max_train_steps": 4,
        "checkpointing_steps": 2,
        "validation_steps": 2,
        "num_validation_images": 2,
        "validation_num_inference_steps": 2,
        "learning_rate": 1e-3,
        "output_dir": str(out),
    }
    values.update(extra)
    return values


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; two threads fight with the other jobs of a shared box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight SDXL-architecture diffusers folder: two CLIP text encoders (the second with a
    projection), a text_time UNet; 32 px images, 16 px latents."""
    from sdstudio.demo.tiny import build_tiny_sdxl_pipeline

    return build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl") / "tiny-sdxl", seed=0)


@pytest.fixture(scope="session")
def demo_dreambooth_run(tmp_path_factory: pytest.TempPathFactory):
    """The shipped demo DreamBooth config, trained once for the learning and recommendation tests,
    with a checkpoint (scored by the demo judge) every 50 steps. Checkpoints and samples do not
    change the training: its noise and data order come from per-micro-batch generators."""
    from sdstudio.core.config import load_config
    from sdstudio.core.paths import data_dir
    from sdstudio.core.training.trainer import train
    from sdstudio.demo import evaluation

    out = tmp_path_factory.mktemp("demo-dreambooth") / "run"
    cfg = load_config(data_dir() / "configs" / "demo-dreambooth.toml", evaluation.recommend_run_overrides(out))
    return train(cfg)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`, see pyproject.toml) the tests that share the demo
    DreamBooth run go to one worker, so that minutes-long run is trained once, not once per worker."""
    for item in items:
        if "demo_dreambooth_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("demo_dreambooth_run"))
