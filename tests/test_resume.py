"""Faults: a run killed with SIGKILL resumes to the same weights; Ctrl-C leaves a resumable run.
(Two processes: test_trainer_multiprocess.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import default_signals, tiny_train_values
from sdstudio.core.runs.run_dir import RunDir


def write_config(path: Path, values: dict[str, object]) -> Path:
    from sdstudio.core.io.toml_text import dumps_toml

    path.write_text(dumps_toml(values))
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdstudio", *args]


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended early (rc {proc.returncode}): {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.02)
    raise AssertionError("timed out")


def kill_after_a_checkpoint_and_resume(model_dir: Path, tmp_path: Path, total: int, **common: object):
    """Train `total` steps straight; train the same config again, SIGKILL it once a checkpoint exists,
    resume it. Returns (the straight run, the killed-and-resumed run, the step of the kill, the resume's
    output). Both runs' final LoRA weights and loss curves must then be equal."""
    straight = write_config(tmp_path / "straight.toml", tiny_train_values(model_dir, tmp_path / "straight", **common))
    killed = write_config(tmp_path / "killed.toml", tiny_train_values(model_dir, tmp_path / "killed", **common))
    subprocess.run(cli("train", str(straight), "--quiet"), check=True, capture_output=True, timeout=600)

    run = RunDir(tmp_path / "killed")
    proc = subprocess.Popen(cli("train", str(killed)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: bool(run.checkpoints()), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run.status()["state"] == "running"  # killed: nobody marked it
    at_kill = run.checkpoints()[-1].step
    assert at_kill < total
    done = subprocess.run(cli("train", "--resume", str(run.path), "--quiet"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return RunDir(tmp_path / "straight"), run, at_kill, done.stdout


def assert_same_weights_and_losses(a_run: RunDir, b_run: RunDir, step: int) -> None:
    import torch

    a = load_file(str(a_run.checkpoint(step).weights))
    b = load_file(str(b_run.checkpoint(step).weights))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=1e-5), key
    # the loss curve continues exactly too
    la = [m["loss"] for m in a_run.metrics()]
    lb = [m["loss"] for m in b_run.metrics()]
    assert la == pytest.approx(lb, rel=1e-5, abs=1e-6)


def test_sigkill_after_a_checkpoint_then_resume_matches_an_uninterrupted_run(tiny_model_dir, instance_dir, tmp_path):
    straight, run, at_kill, out = kill_after_a_checkpoint_and_resume(
        tiny_model_dir, tmp_path, 8, instance_data_dir=str(instance_dir), instance_prompt="a photo of sks shape",
        max_train_steps=8, checkpointing_steps=2, validation_steps=100, random_flip=True, lr_scheduler="cosine")
    assert f"resumed from {run.checkpoint(at_kill).path} at step {at_kill}" in out
    assert run.status()["state"] == "finished" and run.status()["step"] == 8
    assert [m["step"] for m in run.metrics()] == list(range(1, 9))
    assert_same_weights_and_losses(straight, run, 8)


def test_ctrl_c_saves_a_checkpoint_and_marks_the_run_stopped(tiny_model_dir, instance_dir, tmp_path):
    cfg = write_config(tmp_path / "c.toml", tiny_train_values(
        tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir), instance_prompt="sks",
        max_train_steps=500, checkpointing_steps=1000, validation_steps=1000))
    run = RunDir(tmp_path / "run")
    proc = subprocess.Popen(cli("train", str(cfg)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_signals)  # SIGINT may be ignored in this process (nohup, `&`)
    wait_for(lambda: len(run.metrics()) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    status = run.status()
    assert status["state"] == "stopped"
    assert run.latest_checkpoint() is not None and run.latest_checkpoint().step == status["step"] >= 2
    assert f"sdstudio train --resume {run.path}" in out
