"""Base models: a bad path, a non-model file or a model of another family gets a one-line message
saying what was found and what is expected; good ones resolve without loading weights."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sdstudio.cli import main
from sdstudio.core.errors import ModelError, SdstudioError
from sdstudio.core.models import load_pipeline, resolve_base_model


def test_a_diffusers_folder_resolves_with_its_family(tiny_model_dir):
    base = resolve_base_model(str(tiny_model_dir))
    assert (base.kind, base.family, base.name) == ("folder", "sd1", "tiny-sd")


@pytest.mark.parametrize("make,expected", [
    (lambda d: d / "missing", "no such file or folder"),
    (lambda d: (d / "notes.txt", (d / "notes.txt").write_text("hi"))[0], "a '.txt' file is not a model"),
    (lambda d: (d / "empty", (d / "empty").mkdir())[0], "not a diffusers model folder"),
])
def test_bad_paths_are_explained(tmp_path, make, expected):
    with pytest.raises(ModelError, match=expected):
        resolve_base_model(str(make(tmp_path)))


@pytest.mark.parametrize("key, says", [
    ("conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight", "SDXL refiner"),
    ("model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", "Stable Diffusion 3"),
    ("double_blocks.0.img_attn.qkv.weight", "Flux model"),
])
def test_families_sdstudio_cannot_train_are_refused_by_name(tmp_path, key, says):
    path = tmp_path / "other.safetensors"
    save_file({key: torch.zeros(1), "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ModelError, match=says):
        resolve_base_model(str(path))


def test_a_lora_file_passed_as_base_model_is_refused(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)}, str(path))
    with pytest.raises(ModelError, match="LoRA file, not a base model"):
        resolve_base_model(str(path))


def test_an_sdxl_refiner_folder_is_refused(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"addition_embed_type": "text_time"}))
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLImg2ImgPipeline",
                                                           "text_encoder": [None, None]}))
    with pytest.raises(ModelError, match="SDXL refiner"):
        resolve_base_model(str(tmp_path))


def test_a_truncated_safetensors_is_refused(tmp_path):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(b"\xff\xff\xff\x7f\x00\x00\x00\x00{")
    with pytest.raises(ModelError, match="not a readable .safetensors"):
        resolve_base_model(str(path))


class _Boom:
    """Unpickling this would create the marker file (a stand-in for any code a pickle can run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.marker}'",))


def test_a_ckpt_whose_pickle_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "should-not-exist"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": _Boom(marker)}))
    with pytest.raises(SdstudioError, match="refused to load"):
        resolve_base_model(str(path))
    assert not marker.exists()


def test_cli_prints_one_line_for_a_bad_model(tmp_path, capsys, instance_dir):
    assert main(["train", "--instance_data_dir", str(instance_dir), "--instance_prompt", "x",
                 "--pretrained_model_name_or_path", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no such file or folder" in err and err.count("\n") == 0


def test_the_demo_model_loads_through_the_same_path_as_a_folder():
    base = resolve_base_model("demo")
    assert base.kind == "demo" and base.family == "sd1"
    pipe = load_pipeline("demo")
    assert type(pipe).__name__ == "StableDiffusionPipeline"


@pytest.mark.parametrize("cls, says", [("StableDiffusion3Pipeline", "Stable Diffusion 3"), ("FluxPipeline", "Flux model")])
def test_sd3_and_flux_folders_are_refused_by_name(tmp_path, cls, says):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    with pytest.raises(ModelError, match=says):
        resolve_base_model(str(tmp_path))
