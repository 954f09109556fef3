"""Resume continues the run that was started, or says why not: a changed dataset (files added,
removed, resized) or base model is refused with a message naming the change; --force resumes
and records the change in run.toml."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from conftest import draw_shape_images, tiny_train_values
from sdstudio.core.config import build_config
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training.resume_guard import ResumeRefused
from sdstudio.core.training.trainer import train


def test_resume_after_a_dataset_change_is_refused_naming_the_change_and_force_records_it(tiny_model_dir, tmp_path):
    folder = tmp_path / "instance"
    draw_shape_images(folder, 4, (230, 30, 30))
    values = tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(folder), instance_prompt="sks",
                               max_train_steps=2, validation_steps=100, num_validation_images=1)
    run = train(build_config(values))
    assert run.meta()["dataset"]["files"] == ["000.png", "001.png", "002.png", "003.png"]

    draw_shape_images(tmp_path / "more", 6, (30, 30, 230))
    (tmp_path / "more" / "005.png").rename(folder / "new-one.png")
    Image.new("RGB", (48, 48), (9, 9, 9)).save(folder / "001.png")  # same name, other picture (other size)
    longer = build_config({**values, "max_train_steps": 3})
    with pytest.raises(ResumeRefused) as info:
        train(longer, resume=run.path)
    message = str(info.value)
    print(message)
    assert "1 file added (new-one.png)" in message and "1 file changed size (001.png:" in message
    assert "--force" in message
    assert run.status()["state"] == "finished" and run.latest_checkpoint().step == 2  # nothing touched

    done = subprocess.run([sys.executable, "-m", "sdstudio", "train", "--resume", str(run.path), "--max_train_steps", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "1 file added (new-one.png)" in done.stderr, done.stdout + done.stderr

    forced = train(longer, resume=run.path, force=True)
    assert forced.status()["state"] == "finished" and forced.latest_checkpoint().step == 3
    notes = RunDir(run.path).meta()["forced_resumes"]
    assert len(notes) == 1 and "resumed at step 2 with --force" in notes[0] and "new-one.png" in notes[0]
    assert "new-one.png" in RunDir(run.path).meta()["dataset"]["files"]  # the new inputs are what the run now has


def test_resume_from_another_base_model_is_refused(tiny_model_dir, instance_dir, tmp_path):
    import shutil

    values = tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                               instance_prompt="sks", max_train_steps=1, validation_steps=100, num_validation_images=1)
    run = train(build_config(values))
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    weights = next((other / "unet").glob("*.safetensors"))
    from safetensors.torch import load_file, save_file

    sd = load_file(str(weights))
    first = sorted(sd)[0]
    sd[first] = sd[first] + 1.0
    save_file(sd, str(weights))
    with pytest.raises(ResumeRefused, match="base model .* has hash .*, the run started from"):
        train(build_config({**values, "pretrained_model_name_or_path": str(other), "max_train_steps": 2}),
              resume=run.path)
