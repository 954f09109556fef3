"""Validation samples are a choice: with no validation_prompts the run samples its instance/class
prompts (or its first captions); only num_validation_images = 0 or validation_steps = 0 turn
sampling off."""

from __future__ import annotations

import pytest

from conftest import tiny_train_values
from sdstudio.core import events as ev
from sdstudio.core.config import build_config
from sdstudio.core.errors import ConfigError
from sdstudio.core.training.trainer import train


@pytest.mark.parametrize("off", [{"num_validation_images": 0}, {"validation_steps": 0}])
def test_zero_images_or_zero_steps_turn_sampling_off(tiny_model_dir, instance_dir, tmp_path, off):
    control = ev.TrainerControl()
    seen: list[ev.Event] = []

    def on_event(event: ev.Event) -> None:
        seen.append(event)
        if isinstance(event, ev.StepEvent) and event.step == 1:
            control.request_sample()  # an explicit request still samples, when there are images to make

    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="sks", validation_prompts=[], max_train_steps=2, **off))
    run = train(cfg, on_event=on_event, control=control)
    assert run.status()["state"] == "finished"
    sampled = sorted({e.step for e in seen if isinstance(e, ev.SampleEvent)})
    assert sampled == ([] if "num_validation_images" in off else [1])  # never step 0, never the end


def test_empty_validation_prompts_sample_the_instance_prompt(tiny_model_dir, instance_dir, tmp_path):
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="a photo of sks shape", validation_prompts=[],
                                         max_train_steps=1, num_validation_images=1))
    run = train(cfg)
    assert {(s.step, s.prompt) for s in run.samples()} == {(0, "a photo of sks shape"), (1, "a photo of sks shape")}


def test_negative_sampling_settings_are_refused_naming_the_field():
    with pytest.raises(ConfigError, match="num_validation_images"):
        build_config({"instance_data_dir": ".", "instance_prompt": "sks", "num_validation_images": -1})
