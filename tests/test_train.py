"""The trainer on a tiny real SD model: run directory, events, LoRA files, prior preservation, faults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import draw_shape_images, tiny_train_values
from sdstudio.core import events as ev
from sdstudio.core.config import build_config
from sdstudio.core.errors import TrainingError
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training.trainer import train


@pytest.fixture(scope="module")
def dreambooth_run(tiny_model_dir, tmp_path_factory):
    """One 4-step DreamBooth run shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("db")
    inst = tmp / "instance"
    draw_shape_images(inst, 4, (230, 30, 30))
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp / "run", instance_data_dir=str(inst),
                                         instance_prompt="a photo of sks shape", rank=4, lora_alpha=8.0))
    seen: list[ev.Event] = []
    run = train(cfg, on_event=seen.append)
    return run, seen, cfg


def test_run_directory_holds_config_status_metrics_samples_checkpoints(dreambooth_run):
    run, _, cfg = dreambooth_run
    meta = run.meta()
    assert meta["version"] and meta["base_model"]["name"] == "tiny-sd" and len(meta["base_model"]["sha256"]) == 64
    assert run.config()["instance_prompt"] == "a photo of sks shape"
    status = run.status()
    assert (status["state"], status["step"], status["total"]) == ("finished", 4, 4)
    metrics = run.metrics()
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert all(np.isfinite(m["loss"]) and m["lr"] > 0 and m["images_per_s"] > 0 for m in metrics)
    samples = run.samples()
    assert sorted({s.step for s in samples}) == [0, 2, 4]  # step 0 included
    assert {(s.prompt, s.seed) for s in samples} == {("a photo of sks shape", 0), ("a photo of sks shape", 1)}
    assert all(Image.open(s.path).size == (32, 32) for s in samples)
    assert [c.step for c in run.checkpoints()] == [2, 4]
    assert not list(run.path.rglob("*.tmp"))


def test_events_arrive_in_order(dreambooth_run):
    _, seen, _ = dreambooth_run
    steps = [e.step for e in seen if isinstance(e, ev.StepEvent)]
    assert steps == [1, 2, 3, 4]
    assert [e.step for e in seen if isinstance(e, ev.SampleEvent)] == [0, 2, 4]
    assert [e.step for e in seen if isinstance(e, ev.CheckpointEvent)] == [2, 4]
    assert isinstance(seen[-1], ev.FinishedEvent) and not seen[-1].stopped


def test_checkpoint_loads_with_diffusers_and_reproduces_the_validation_sample(dreambooth_run, tiny_model_dir):
    import torch

    from sdstudio.core.models import load_pipeline

    run, _, cfg = dreambooth_run
    keys = json.loads(Path(run.checkpoint(4).weights).read_bytes()[8:8 + int.from_bytes(
        Path(run.checkpoint(4).weights).read_bytes()[:8], "little")])
    assert any(k.startswith("unet.") and "to_q" in k for k in keys)
    pipe = load_pipeline(str(tiny_model_dir))
    base = pipe(cfg.instance_prompt, num_inference_steps=2, height=32, width=32, guidance_scale=cfg.validation_guidance_scale,
                generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    pipe.load_lora_weights(str(run.checkpoint(4).weights))
    tuned = pipe(cfg.instance_prompt, num_inference_steps=2, height=32, width=32, guidance_scale=cfg.validation_guidance_scale,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    sample = next(s for s in run.samples() if s.step == 4 and s.seed == 0)
    recorded = np.asarray(Image.open(sample.path), dtype=np.float32) / 255.0
    assert np.abs(tuned - recorded).max() < 2.5 / 255  # same image, up to PNG rounding
    assert np.abs(tuned - base).max() > 0.01  # and the LoRA changed it


def test_text_to_image_with_text_encoder_lora(tiny_model_dir, captioned_dir, tmp_path):
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", train_data_dir=str(captioned_dir),
                                         train_text_encoder=True, max_train_steps=2, validation_steps=10,
                                         gradient_accumulation_steps=2, train_batch_size=2))
    run = train(cfg)
    from safetensors import safe_open

    with safe_open(str(run.checkpoint(2).weights), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("text_encoder.") and "q_proj" in k for k in keys)
    assert {s.prompt for s in run.samples()} <= {"a red shape", "a blue shape"}


def test_prior_preservation_generates_only_missing_class_images(tiny_model_dir, instance_dir, tmp_path):
    class_dir = tmp_path / "class"
    draw_shape_images(class_dir, 1, (0, 200, 0))
    kept = (class_dir / "000.png").read_bytes()
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="a photo of sks shape", with_prior_preservation=True,
                                         class_data_dir=str(class_dir), class_prompt="a photo of a shape",
                                         num_class_images=3, prior_loss_weight=0.5, max_train_steps=2))
    run = train(cfg)
    pngs = sorted(p.name for p in class_dir.glob("*.png"))
    assert len(pngs) == 3 and (class_dir / "000.png").read_bytes() == kept
    assert run.status()["state"] == "finished"
    assert {s.prompt for s in run.samples()} == {"a photo of sks shape", "a photo of a shape"}


def test_checkpoints_total_limit_keeps_the_newest_and_tensorboard_logs(tiny_model_dir, instance_dir, tmp_path):
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="sks", max_train_steps=6, checkpointing_steps=1,
                                         checkpoints_total_limit=2, validation_steps=100, report_to="tensorboard"))
    run = train(cfg)
    assert [c.step for c in run.checkpoints()] == [5, 6]
    assert list((run.path / "logs").rglob("events.out.tfevents.*"))


def test_save_sample_and_stop_commands_act_between_steps(tiny_model_dir, instance_dir, tmp_path):
    control = ev.TrainerControl()
    seen: list[ev.Event] = []

    def on_event(event: ev.Event) -> None:
        seen.append(event)
        if isinstance(event, ev.StepEvent) and event.step == 1:
            control.request_save()
            control.request_sample()
        if isinstance(event, ev.StepEvent) and event.step == 3:
            control.request_stop()

    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="sks", max_train_steps=50, checkpointing_steps=100,
                                         validation_steps=100))
    run = train(cfg, on_event=on_event, control=control)
    assert run.status()["state"] == "stopped" and run.status()["step"] == 3
    assert [c.step for c in run.checkpoints()] == [1, 3]  # saved on request, then on stop
    assert sorted({s.step for s in run.samples()}) == [0, 1]  # step 0, then on request
    assert isinstance(seen[-1], ev.FinishedEvent) and seen[-1].stopped


def test_non_finite_loss_fails_with_a_message_and_keeps_the_last_good_checkpoint(tiny_model_dir, instance_dir, tmp_path):
    seen: list[ev.Event] = []
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="sks", learning_rate=1e30, max_grad_norm=1e30,
                                         max_train_steps=20, checkpointing_steps=1, validation_steps=100))
    with pytest.raises(TrainingError, match="loss became (nan|inf).*last good checkpoint is .*step-0000") as info:
        train(cfg, on_event=seen.append)
    run = RunDir(tmp_path / "run")
    assert run.status()["state"] == "failed" and "Lower learning_rate" in run.status()["error"]
    assert run.checkpoints() and isinstance(seen[-1], ev.FailedEvent)
    assert str(run.checkpoints()[-1].path) in str(info.value)


def test_unusable_dataset_fails_before_loading_the_model(tiny_model_dir, tmp_path):
    """A real model and a folder with no usable picture: the dataset check refuses it, naming the field,
    the file and its reason, before any run folder exists or a model is loaded."""
    from sdstudio.core.errors import DatasetError

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG broken")
    (broken / "notes.txt").write_text("not a picture")
    seen: list[ev.Event] = []
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(broken),
                                         instance_prompt="sks"))
    with pytest.raises(DatasetError, match=r"instance_data_dir = .*broken: no usable image \(a\.png: ") as info:
        train(cfg, on_event=seen.append)
    assert f"sdstudio dataset check {broken}" in str(info.value)
    assert not (tmp_path / "run").exists()  # nothing started: no run folder, no model loaded
    assert not any(isinstance(e, ev.LogEvent) and "loading" in e.message for e in seen)

    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(empty),
                                         instance_prompt="sks"))
    with pytest.raises(DatasetError, match="no usable image \\(the folder is empty\\)"):
        train(cfg)


def test_pruning_keeps_favourites_and_the_newest(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in (1, 2, 3, 4, 5):
        ckpt = run.checkpoint_path(step)
        ckpt.mkdir(parents=True)
        (ckpt / "pytorch_lora_weights.safetensors").write_bytes(b"x")
    run.set_favourites({1, 2})
    assert run.prune_checkpoints(2) == [3, 4]
    assert [c.step for c in run.checkpoints()] == [1, 2, 5]
