"""Writes a user relies on: files another user's A1111/ComfyUI can read (the umask), a checkpoint
swap that never loses the previous checkpoint, and jsonl readers that survive a torn last line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import tiny_train_values
from sdstudio.cli import main
from sdstudio.core.config import build_config
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training import checkpoint
from sdstudio.core.training.trainer import train


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


@pytest.fixture(scope="module")
def small_run(tiny_model_dir, tmp_path_factory):
    """A 2-step DreamBooth run with checkpoints at steps 1 and 2, made under umask 022."""
    from conftest import draw_shape_images

    tmp = tmp_path_factory.mktemp("writes")
    draw_shape_images(tmp / "instance", 4, (230, 30, 30))
    old = os.umask(0o022)
    try:
        cfg = build_config(tiny_train_values(tiny_model_dir, tmp / "run", instance_data_dir=str(tmp / "instance"),
                                             instance_prompt="sks", max_train_steps=2, checkpointing_steps=1,
                                             validation_steps=2, num_validation_images=1))
        return train(cfg)
    finally:
        os.umask(old)


def test_export_merged_model_and_sample_png_are_0644_under_umask_022(small_run, tiny_model_dir, tmp_path, umask_022):
    run = small_run
    sample = run.samples()[-1].path
    export = tmp_path / "lora.safetensors"
    assert main(["export", str(run.path), "-o", str(export)]) == 0
    merged = tmp_path / "merged.safetensors"
    assert main(["merge", str(tiny_model_dir), "--lora", f"{export}:0.8", "-o", str(merged)]) == 0
    listing = subprocess.run(["ls", "-l", str(export), str(merged), str(sample)], capture_output=True, text=True).stdout
    print(listing)
    assert (mode(export), mode(merged), mode(sample)) == ("0o644",) * 3, listing
    assert mode(run.checkpoint(2).weights) == "0o644"


def test_atomic_writes_follow_a_stricter_umask(tmp_path):
    from sdstudio.core.io import atomic

    old = os.umask(0o027)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.txt") == "0o640"


def test_failed_rename_keeps_the_previous_checkpoint(small_run, monkeypatch):
    """A kill between writing a checkpoint and renaming it in (simulated by a failing rename)
    leaves the previous checkpoint whole, and the run resumes from it."""
    run = RunDir(small_run.path)
    before = run.checkpoint(2).weights.read_bytes()
    staging = checkpoint.begin(run, 2)
    (staging / "pytorch_lora_weights.safetensors").write_bytes(b"half-written")
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(src) == staging:  # the new folder's rename in: the process "dies" here
            raise OSError("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", failing_replace)
    with pytest.raises(OSError, match="killed"):
        checkpoint.commit(run, 2)
    monkeypatch.undo()
    # on disk now: step-000002 set aside as .old, the staging folder beside it
    assert not run.checkpoint_path(2).exists()
    run.recover_checkpoints()
    assert run.checkpoint(2).weights.read_bytes() == before
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["step-000001", "step-000002"]
    assert checkpoint.has_resume_state(run.checkpoint(2))


def test_readers_tolerate_a_torn_last_line_and_appends_after_it_survive(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.append_metrics({"step": 1, "loss": 0.5})
    with open(run.metrics_jsonl, "a") as fh:
        fh.write('{"step": 2, "lo')  # a crash mid-append
    assert [m["step"] for m in run.metrics()] == [1]
    run.append_metrics({"step": 3, "loss": 0.4})
    assert [m["step"] for m in run.metrics()] == [1, 3]

    run.samples_dir.mkdir(parents=True)
    (run.samples_dir / "a.png").write_bytes(b"png")
    row = {"step": 0, "prompt_index": 0, "prompt": "p", "seed": 0, "file": "a.png"}
    run.samples_index.write_text(json.dumps(row) + "\n" + '{"step": 1, "prompt_ind')
    assert [(s.step, s.path.name) for s in run.samples()] == [(0, "a.png")]


def test_resume_refuses_training_state_that_is_not_plain_data(small_run, tmp_path):
    """Accelerate unpickles registered objects with weights_only=False: a planted object is
    refused before that, never run."""
    import collections
    import shutil

    import torch

    from sdstudio.core.errors import SdstudioError

    copy = tmp_path / "copy"
    shutil.copytree(small_run.path, copy)
    planted = RunDir(copy).checkpoint(2).state_dir / "custom_checkpoint_1.pkl"
    torch.save({"step": collections.OrderedDict(a=print)}, planted)
    cfg = build_config({**RunDir(copy).config(), "output_dir": str(copy), "max_train_steps": 3})
    with pytest.raises(SdstudioError, match="custom_checkpoint_1.pkl: not plain training state"):
        train(cfg, resume=copy)
