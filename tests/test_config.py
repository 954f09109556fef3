"""Configs are refused before any model loads, with the offending field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdstudio.cli import main
from sdstudio.commands.train import parse_overrides
from sdstudio.core.config import build_config, load_config
from sdstudio.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return path


def test_unknown_field_is_named_with_a_suggestion(tmp_path, instance_dir):
    cfg = write(tmp_path, f'instance_data_dir = "{instance_dir}"\ninstance_prompt = "x"\nlearning_rat = 1e-4\n')
    with pytest.raises(ConfigError, match=r"field 'learning_rat': unknown field \(did you mean 'learning_rate'\?\)"):
        load_config(cfg)


def test_wrong_type_is_named(tmp_path, instance_dir):
    cfg = write(tmp_path, f'instance_data_dir = "{instance_dir}"\ninstance_prompt = "x"\nmax_train_steps = "many"\n')
    with pytest.raises(ConfigError, match="field 'max_train_steps': expected a whole number"):
        load_config(cfg)


def test_prior_preservation_without_class_prompt_is_refused(tmp_path, instance_dir):
    cfg = write(tmp_path, f'instance_data_dir = "{instance_dir}"\ninstance_prompt = "a sks dog"\n'
                          f'with_prior_preservation = true\nclass_data_dir = "cls"\n')
    with pytest.raises(ConfigError, match="field 'class_prompt'"):
        load_config(cfg)


@pytest.mark.parametrize("values,field", [
    ({"train_data_dir": "/nonexistent"}, "train_data_dir"),
    ({"instance_data_dir": "."}, "instance_prompt"),
    ({}, "train_data_dir"),
    ({"train_data_dir": ".", "resolution": 500}, "resolution"),
    ({"train_data_dir": ".", "lr_scheduler": "exponential"}, "lr_scheduler"),
    ({"train_data_dir": ".", "mixed_precision": "fp8"}, "mixed_precision"),
    ({"train_data_dir": ".", "rank": 0}, "rank"),
    ({"train_data_dir": ".", "with_prior_preservation": True}, "with_prior_preservation"),
])
def test_impossible_values_name_their_field(values, field):
    with pytest.raises(ConfigError) as info:
        build_config(values)
    assert info.value.field == field


def test_relative_paths_resolve_against_the_config_file(tmp_path, instance_dir):
    sub = tmp_path / "configs"
    sub.mkdir()
    cfg = write(sub, 'instance_data_dir = "../instance"\ninstance_prompt = "a sks dog"\noutput_dir = "../out"\n')
    loaded = load_config(cfg)
    assert Path(loaded.instance_data_dir) == instance_dir.resolve()
    assert Path(loaded.output_dir) == (tmp_path / "out").resolve()


def test_command_line_overrides_the_file(tmp_path, instance_dir):
    cfg = write(tmp_path, f'instance_data_dir = "{instance_dir}"\ninstance_prompt = "x"\nmax_train_steps = 10\n')
    over = parse_overrides(["--max-train-steps", "3", "--learning_rate=5e-5", "--random_flip",
                            "--validation_prompts", '["a", "b"]'])
    loaded = load_config(cfg, over)
    assert (loaded.max_train_steps, loaded.learning_rate, loaded.random_flip) == (3, 5e-5, True)
    assert loaded.validation_prompts == ["a", "b"]


def test_cli_reports_bad_config_in_one_line_and_exits_2(tmp_path, instance_dir, capsys):
    cfg = write(tmp_path, f'instance_data_dir = "{instance_dir}"\ninstance_prompt = "x"\nrank = -1\n')
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "field 'rank'" in err and "\n" not in err


@pytest.mark.parametrize("name", ["sd15-text2image", "sd15-dreambooth", "sd15-dreambooth-prior",
                                  "demo-text2image", "demo-dreambooth", "demo-dreambooth-prior", "demo-dreambooth-full",
                                  "sdxl-text2image", "sdxl-dreambooth", "sdxl-dreambooth-prior"])
def test_shipped_configs_parse(name):
    from sdstudio.core.config import FIELDS, load_toml

    values = load_toml(ROOT / "data" / "configs" / f"{name}.toml")
    assert set(values) <= set(FIELDS)
    if name.startswith("demo"):
        load_config(ROOT / "data" / "configs" / f"{name}.toml")  # demo data ships: fully valid


def test_a_mask_folder_inside_the_dataset_is_refused(tmp_path, instance_dir):
    """Its masks would be walked as training images."""
    inside = instance_dir / "masks"
    inside.mkdir()
    values = {"instance_data_dir": str(instance_dir), "instance_prompt": "a sks dog", "mask_dir": str(inside)}
    with pytest.raises(ConfigError, match="field 'mask_dir': is inside instance_data_dir"):
        build_config(values)
    beside = tmp_path / "masks-beside"
    beside.mkdir()
    assert build_config({**values, "mask_dir": str(beside)}).mask_dir == str(beside)
