"""Resume continues the run that was started, or says why not: a changed dataset (files added,
removed, resized, edited at the same size, captions changed) or base model (another hash, or
another hub id, folder or file where no hash can tell) is refused with a message naming the
change; --force resumes and records the change in run.toml."""

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


def test_an_image_edited_at_the_same_size_or_a_changed_caption_refuses_the_resume(tiny_model_dir, captioned_dir,
                                                                                   tmp_path):
    import json

    from PIL import Image

    # stored PNGs: the byte size depends on the picture's size only, so an edited pixel keeps it
    for path in sorted(captioned_dir.rglob("*.png")):
        Image.open(path).convert("RGB").save(path, compress_level=0)
    values = tiny_train_values(tiny_model_dir, tmp_path / "run", train_data_dir=str(captioned_dir),
                               max_train_steps=1, validation_loss=False, num_validation_images=0)
    run = train(build_config(values))
    edited = captioned_dir / "red" / "001.png"
    size = edited.stat().st_size
    image = Image.open(edited)
    image.putpixel((0, 0), (255, 255, 255))
    image.save(edited, compress_level=0)
    assert edited.stat().st_size == size
    metadata = captioned_dir / "metadata.jsonl"
    rows = [json.loads(line) for line in metadata.read_text().splitlines()]
    rows[4]["text"] = "a green shape"
    metadata.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ResumeRefused) as info:
        train(build_config({**values, "max_train_steps": 2}), resume=run.path)
    message = str(info.value)
    print(message)
    assert "1 file changed content at the same size (red/001.png)" in message
    assert f"1 caption changed ({rows[4]['file_name']})" in message


def test_another_hub_model_or_folder_is_refused_although_no_hash_can_compare_them():
    from sdstudio.core.training import resume_guard

    hub = {"name": "org/model-a", "kind": "hub", "family": "sd1", "location": "org/model-a"}
    other_hub = {**hub, "name": "org/model-b", "location": "org/model-b"}
    with pytest.raises(ResumeRefused, match="base model is org/model-b, the run started from org/model-a"):
        resume_guard.check("RUN", {"base_model": hub}, {}, other_hub, force=False)
    folder = {"name": "model", "kind": "folder", "family": "sd1", "location": "/models/model", "sha256": "ab" * 32}
    with pytest.raises(ResumeRefused, match="base model is org/model-a, the run started from /models/model"):
        resume_guard.check("RUN", {"base_model": folder}, {}, hub, force=False)  # only one side has a hash
    assert resume_guard.check("RUN", {"base_model": hub}, {}, dict(hub), force=False) == []
    moved = {**folder, "location": "/elsewhere/model"}  # the same weights, moved: the hash says so
    assert resume_guard.check("RUN", {"base_model": folder}, {}, moved, force=False) == []
    assert resume_guard.check("RUN", {"base_model": hub}, {}, other_hub, force=True)  # --force: recorded
