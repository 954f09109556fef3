"""Shipped configs by name from any folder, and `sdstudio configs copy`: a copy that trains from
wherever it is saved (its relative paths made absolute)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdstudio.cli import main
from sdstudio.core.config import load_config, save_toml
from sdstudio.core.errors import ConfigError
from sdstudio.core.paths import configs_dir, data_dir


def test_configs_list_and_load_by_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["configs"]) == 0
    listed = capsys.readouterr().out
    for path in configs_dir().glob("*.toml"):
        assert path.stem in listed
    cfg = load_config("demo-dreambooth", {"max_train_steps": 2})
    assert Path(cfg.instance_data_dir) == data_dir() / "dreambooth" / "pink-heart" and cfg.max_train_steps == 2
    assert load_config("demo-dreambooth.toml").instance_prompt == cfg.instance_prompt
    with pytest.raises(ConfigError, match="no shipped config has that name .*demo-dreambooth"):
        load_config("demo-dreambooht")
    shipped = configs_dir() / "demo-dreambooth.toml"
    before = shipped.read_bytes()
    with pytest.raises(PermissionError, match="does not write into its shipped configs"):
        save_toml(cfg, shipped)  # the Train screen's "Save TOML" on the config it started from
    assert shipped.read_bytes() == before


def test_a_copied_config_trains_from_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path,
                                                    one_torch_thread: None, capsys: pytest.CaptureFixture[str]) -> None:
    from sdstudio.core.training.trainer import train

    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert main(["configs", "copy", "demo-dreambooth", str(tmp_path)]) == 0
    copy = tmp_path / "demo-dreambooth.toml"
    assert capsys.readouterr().out.strip() == str(copy)
    text = copy.read_text()
    assert f'instance_data_dir = "{data_dir() / "dreambooth" / "pink-heart"}"' in text and "# DreamBooth LoRA" in text
    assert main(["configs", "copy", "demo-dreambooth", str(copy)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err

    monkeypatch.chdir(tmp_path)  # the copy no longer sits beside the sample data: absolute paths still find it
    cfg = load_config(copy, {"pretrained_model_name_or_path": str(tiny_model_dir), "resolution": 32,
                             "max_train_steps": 1, "checkpointing_steps": 1, "validation_steps": 0,
                             "validation_loss": False, "output_dir": str(tmp_path / "run")})
    run = train(cfg)
    assert [c.step for c in run.checkpoints()] == [1]
