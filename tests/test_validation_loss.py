"""The validation loss is deterministic: the same weights give the same bits, twice and across a resume,
and every checkpoint's value lands in metrics.jsonl with its cost; a stop's checkpoint gets its value
on resume (or from `sdstudio score`), never during the stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_train_values
from sdstudio.core.config import build_config
from sdstudio.core.errors import ConfigError
from sdstudio.core.events import StepEvent, TrainerControl
from sdstudio.core.training.examples import instance_examples
from sdstudio.core.training.validation_loss import ValidationLoss, split_examples, stratified_timesteps


def _cfg(tiny_model_dir: Path, out: Path, instance_dir: Path, **extra: object):
    values = {"instance_data_dir": str(instance_dir), "instance_prompt": "a photo of sks shape", "validation_steps": 100}
    return build_config(tiny_train_values(tiny_model_dir, out, **{**values, **extra}))


def test_timesteps_cover_the_whole_schedule() -> None:
    assert stratified_timesteps(1000, 8) == [62, 187, 312, 437, 562, 687, 812, 937]
    assert stratified_timesteps(1000, 1) == [500]


def test_same_weights_give_bit_identical_losses_and_other_weights_do_not(tiny_model_dir, instance_dir, tmp_path,
                                                                          one_torch_thread) -> None:
    import torch
    from diffusers import DDPMScheduler

    from sdstudio.core.models import load_pipeline, resolve_base_model

    cfg = _cfg(tiny_model_dir, tmp_path / "run", instance_dir)
    examples, _ = instance_examples(cfg)
    _, held = split_examples(cfg, examples)
    assert held.source == "training" and "training images at fixed noise" in held.note
    pipe = load_pipeline(resolve_base_model(cfg.pretrained_model_name_or_path))
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    args = (cfg, held, pipe.vae, pipe.text_encoder, pipe.tokenizer, sched, torch.device("cpu"))
    first = ValidationLoss(*args).evaluate(pipe.unet)
    torch.manual_seed(1234)  # global RNG state must not matter
    torch.randn(100)
    again = ValidationLoss(*args).evaluate(pipe.unet)
    assert first.loss == again.loss and first.per_timestep == again.per_timestep  # bit-identical, not approx
    assert (first.images, first.timesteps) == (4, 8) and first.seconds > 0
    with torch.no_grad():
        next(pipe.unet.parameters()).add_(0.05)
    assert ValidationLoss(*args).evaluate(pipe.unet).loss != first.loss


def test_validation_split_holds_images_out_of_training(tiny_model_dir, instance_dir, tmp_path) -> None:
    cfg = _cfg(tiny_model_dir, tmp_path / "run", instance_dir, validation_split=0.25)
    examples, _ = instance_examples(cfg)
    train, held = split_examples(cfg, examples)
    assert len(held.examples) == 1 and len(train) == 3 and not set(held.examples) & set(train)
    assert split_examples(cfg, list(reversed(examples)))[1].examples == held.examples  # the same image every time
    too_much = _cfg(tiny_model_dir, tmp_path / "run", instance_dir, validation_split=0.9)
    with pytest.raises(ConfigError, match="validation_split"):
        split_examples(too_much, examples)
    with pytest.raises(ConfigError, match="validation_split"):
        _cfg(tiny_model_dir, tmp_path / "run", instance_dir, validation_split=1.5)


def test_a_validation_folder_is_measured_and_training_keeps_every_image(tiny_model_dir, instance_dir, tmp_path) -> None:
    from conftest import draw_shape_images

    held_dir = tmp_path / "held"
    draw_shape_images(held_dir, 2, (30, 200, 30))
    cfg = _cfg(tiny_model_dir, tmp_path / "run", instance_dir, validation_data_dir=str(held_dir))
    examples, _ = instance_examples(cfg)
    train, held = split_examples(cfg, examples)
    assert train == examples and held.source == "folder" and held.short == "2 held-out images"
    assert {e.path.parent for e in held.examples} == {held_dir} and all(e.caption == "a photo of sks shape" for e in held.examples)
    with pytest.raises(ConfigError, match="validation_data_dir.*folder not found"):
        _cfg(tiny_model_dir, tmp_path / "run", instance_dir, validation_data_dir=str(tmp_path / "missing"))


def test_a_run_and_its_resumed_twin_log_bit_identical_validation_losses(tiny_model_dir, instance_dir, tmp_path,
                                                                        one_torch_thread) -> None:
    from sdstudio.core.runs.run_dir import RunDir
    from sdstudio.core.training.trainer import train

    common = dict(max_train_steps=6, checkpointing_steps=2, random_flip=True)
    # the straight run also scores its samples in the background and logs to TensorBoard
    straight = train(_cfg(tiny_model_dir, tmp_path / "straight", instance_dir, validation_steps=2, scorers=["demo"],
                          report_to="tensorboard", **common))

    control = TrainerControl()

    def stop_at_4(event) -> None:
        if isinstance(event, StepEvent) and event.step == 4:
            control.request_stop()

    twin_cfg = _cfg(tiny_model_dir, tmp_path / "twin", instance_dir, **common)
    train(twin_cfg, on_event=stop_at_4, control=control)
    twin = RunDir(tmp_path / "twin")
    # the stop wrote checkpoint and status at step 4 and left that checkpoint's validation loss for later
    assert twin.status()["state"] == "stopped" and twin.status()["step"] == twin.latest_checkpoint().step == 4
    assert sorted(twin.validation_losses()) == [2] and twin.pending()["val_loss"] == [4]
    train(twin_cfg, resume=twin.path)  # the resume measures it first
    assert "val_loss" not in twin.pending()

    a, b = straight.validation_losses(), twin.validation_losses()
    print(f"validation loss per checkpoint: {a}")
    assert sorted(a) == [2, 4, 6]
    assert a == b  # exact equality: same weights, same fixed inputs
    assert len(set(a.values())) == 3  # the number moves with the weights
    rows = [r for r in straight.metrics()]
    assert [r["step"] for r in rows] == list(range(1, 7))  # training rows stay as they were
    text = (straight.path / "metrics.jsonl").read_text()
    assert text.count('"val_seconds"') == 3 and text.count('"val_timesteps": 8') == 3
    assert text.count('"val_set": "training images at fixed noise"') == 3  # what it is measured on, said so

    from sdstudio.core.training.scoring import read_scores

    table = read_scores(straight)  # the trainer's background scorer wrote it, validation losses included
    assert [r.step for r in table.rows] == [0, 2, 4, 6]
    assert {r.step: r.val_loss for r in table.rows if r.step} == a
    assert table.recommendation is not None and table.recommendation.step in (2, 4, 6)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((straight.path / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("val_loss")}
    assert logged == pytest.approx(a, rel=1e-6)


def test_without_a_held_out_set_a_large_dataset_is_measured_on_a_fixed_subset(tiny_model_dir, tmp_path,
                                                                                 one_torch_thread) -> None:
    """Its cost does not grow with the dataset: 16 of 20 images, the same 16 every time, noise for those only."""
    import torch
    from diffusers import DDPMScheduler

    from conftest import draw_shape_images
    from sdstudio.core.models import load_pipeline, resolve_base_model
    from sdstudio.core.training.validation_loss import TRAINING_SUBSET

    folder = tmp_path / "many"
    draw_shape_images(folder, 20, (230, 30, 30))
    cfg = _cfg(tiny_model_dir, tmp_path / "run", folder, validation_loss_timesteps=2)
    examples, _ = instance_examples(cfg)
    train, held = split_examples(cfg, examples)
    assert TRAINING_SUBSET == 16 and len(held.examples) == 16 and train == examples
    assert "16 of the 20 training images" in held.note and held.short == "16 training images at fixed noise"
    assert split_examples(cfg, list(reversed(examples)))[1].examples == held.examples
    pipe = load_pipeline(resolve_base_model(cfg.pretrained_model_name_or_path))
    val = ValidationLoss(cfg, held, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                         DDPMScheduler.from_config(pipe.scheduler.config), torch.device("cpu"))
    assert tuple(val.noise.shape[:2]) == (2, 16) and val.latents.shape[0] == 16
    assert val.evaluate(pipe.unet).images == 16


def test_sdxl_with_a_validation_split_measures_the_held_out_images(tiny_sdxl_dir, instance_dir, tmp_path,
                                                                   one_torch_thread) -> None:
    from sdstudio.core.training.trainer import Trainer

    cfg = build_config(tiny_train_values(tiny_sdxl_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="a photo of sks shape", validation_split=0.25,
                                         max_train_steps=2, checkpointing_steps=2, validation_steps=100))
    trainer = Trainer(cfg, None, None, None)
    run = trainer.run()
    held = trainer.review.held
    assert held is not None and len(held.examples) == 1 and not set(held.examples) & set(trainer.examples)
    rows = [r for r in (run.path / "metrics.jsonl").read_text().splitlines() if "val_loss" in r]
    assert len(rows) == 1 and '"val_images": 1' in rows[0] and '"val_set": "1 held-out images"' in rows[0]
    assert list(run.validation_losses()) == [2] and run.validation_losses()[2] > 0


def test_over_its_budget_a_checkpoints_validation_loss_is_skipped_and_left_pending(tiny_model_dir, instance_dir,
                                                                                  tmp_path, monkeypatch) -> None:
    """With no free allowance and a tiny share, only the first checkpoint is measured; the others say so
    in the log and wait in pending.json, and `sdstudio score` measures them afterwards."""
    from sdstudio.cli import main
    from sdstudio.core.events import LogEvent
    from sdstudio.core.training import checkpoint_review
    from sdstudio.core.training.trainer import train

    monkeypatch.setattr(checkpoint_review, "ALLOWANCE_S", 0.0)
    cfg = _cfg(tiny_model_dir, tmp_path / "run", instance_dir, max_train_steps=3, checkpointing_steps=1,
               validation_loss_timesteps=2, validation_loss_max_share=1e-6)
    lines: list[str] = []
    run = train(cfg, on_event=lambda e: lines.append(e.message) if isinstance(e, LogEvent) else None)
    assert sorted(run.validation_losses()) == [1]
    assert run.pending().get("val_loss") == [2, 3]
    assert sum("validation loss skipped at step" in line for line in lines) == 2
    assert main(["score", str(run.path), "--scorer", "demo"]) == 0
    assert sorted(run.validation_losses()) == [1, 2, 3] and not run.pending().get("val_loss")
