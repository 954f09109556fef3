"""Mixed precision on the CPU (bf16 autocast and a CPU GradScaler exist in torch): the log names the
dtype LoRA layers compute in, and a run killed after a checkpoint resumes to the weights an
uninterrupted run ends with, GradScaler state included.

A kill is simulated in-process: an exception no handler catches leaves the disk exactly as a
SIGKILL would (status "running", checkpoints as written); test_resume.py kills real processes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import draw_shape_images, tiny_train_values
from sdstudio.core import events as ev
from sdstudio.core.config import build_config
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training.trainer import Trainer


class Killed(BaseException):
    """Not an Exception: nothing in the trainer catches it, like SIGKILL."""


def run_to_end(cfg, resume=None, seen=None):
    trainer = Trainer(cfg, (seen.append if seen is not None else None), None, resume)
    return trainer, trainer.run()


def run_until_checkpoint(cfg, step, on_kill=None):
    """Train until the checkpoint of `step` is written, then die."""
    holder = {}

    def on_event(event):
        if isinstance(event, ev.CheckpointEvent) and event.step == step:
            if on_kill:
                on_kill(holder["trainer"])
            raise Killed()

    trainer = Trainer(cfg, on_event, None, None)
    holder["trainer"] = trainer
    with pytest.raises(Killed):
        trainer.run()
    return RunDir(cfg.output_dir)


def assert_same_weights(a_dir, b_dir, step, atol=0.0):
    a = load_file(str(RunDir(a_dir).checkpoint(step).weights))
    b = load_file(str(RunDir(b_dir).checkpoint(step).weights))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=atol, rtol=0), key


def log_lines(seen):
    return [e.message for e in seen if isinstance(e, ev.LogEvent)]


@pytest.fixture()
def prior_dirs(tmp_path):
    draw_shape_images(tmp_path / "instance", 4, (230, 30, 30))
    draw_shape_images(tmp_path / "class", 4, (0, 200, 0), shape="rectangle")
    return tmp_path / "instance", tmp_path / "class"


def test_bf16_on_cpu_logs_fp32_lora_compute_without_autocast_and_bf16_with_it(tiny_model_dir, instance_dir, tmp_path):
    lines = {}
    for fast in (True, False):
        seen: list[ev.Event] = []
        cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / f"run-{fast}", instance_data_dir=str(instance_dir),
                                             instance_prompt="sks", mixed_precision="bf16", fast_path=fast,
                                             max_train_steps=2, validation_steps=2, num_validation_images=1))
        _, run = run_to_end(cfg, seen=seen)
        assert run.status()["state"] == "finished"
        lines[fast] = [m for m in log_lines(seen) if m.startswith("LoRA compute dtype")]
    print("\n".join(lines[True] + lines[False]))
    assert lines[True] == ['LoRA compute dtype: float32 (measured in the first step; mixed_precision = "bf16", '
                           'frozen weights bfloat16, autocast off)']
    assert lines[False] == ['LoRA compute dtype: bfloat16 (measured in the first step; mixed_precision = "bf16", '
                            'frozen weights bfloat16, autocast on)']


def test_bf16_kill_and_resume_equals_an_uninterrupted_run_with_accumulation_text_encoder_and_prior(
        tiny_model_dir, prior_dirs, tmp_path):
    instance, klass = prior_dirs
    values = dict(instance_data_dir=str(instance), instance_prompt="a photo of sks shape", with_prior_preservation=True,
                  class_data_dir=str(klass), class_prompt="a photo of a shape", num_class_images=4,
                  train_text_encoder=True, gradient_accumulation_steps=2, mixed_precision="bf16", max_train_steps=4,
                  checkpointing_steps=2, validation_steps=100, lr_scheduler="cosine", random_flip=True)
    seen: list[ev.Event] = []
    run_to_end(build_config(tiny_train_values(tiny_model_dir, tmp_path / "straight", **values)), seen=seen)
    folds = [m for m in log_lines(seen) if m.startswith("fold decision")]
    print("\n".join(folds))
    assert folds == ["fold decision (not probed: CPU host memory): folding 2 micro-batches into one pass of 2 images"]

    killed_cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "killed", **values))
    run = run_until_checkpoint(killed_cfg, 2)
    assert run.status()["state"] == "running" and [c.step for c in run.checkpoints()] == [2]
    _, resumed = run_to_end(killed_cfg, resume=run.path)
    assert resumed.status()["state"] == "finished"
    assert_same_weights(tmp_path / "straight", tmp_path / "killed", 4)
    assert any(k.startswith("text_encoder.") for k in load_file(str(resumed.checkpoint(4).weights)))


def test_grad_scaler_state_round_trips_through_a_checkpoint(tiny_model_dir, instance_dir, tmp_path):
    values = dict(instance_data_dir=str(instance_dir), instance_prompt="sks", mixed_precision="fp16", max_train_steps=4,
                  checkpointing_steps=2, validation_steps=100)
    run_to_end(build_config(tiny_train_values(tiny_model_dir, tmp_path / "straight", **values)))
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "killed", **values))
    before = {}
    run = run_until_checkpoint(cfg, 2, on_kill=lambda t: before.update(t.accelerator.scaler.state_dict()))
    assert before["_growth_tracker"] + (before["scale"] != 65536.0) > 0  # the scaler moved: a fresh one differs

    after = {}

    def on_event(event):
        if isinstance(event, ev.LogEvent) and event.message.startswith("resumed from"):
            after.update(trainer.accelerator.scaler.state_dict())

    trainer = Trainer(cfg, on_event, None, run.path)
    trainer.run()
    assert (after["scale"], after["_growth_tracker"]) == (before["scale"], before["_growth_tracker"])
    assert_same_weights(tmp_path / "straight", tmp_path / "killed", 4)
