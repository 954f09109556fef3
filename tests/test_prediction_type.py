"""The base model's prediction type (epsilon or v) decides the training target: run.toml records the
loaded scheduler's, export writes its metadata from that record (never from the resolution), and a
single file's own statement (A1111's yaml beside it, its header, a v_pred key) beats the config
picked for its family."""

from __future__ import annotations

import json
import shutil

from conftest import tiny_train_values
from merge_helpers import write_single_file


def _with_prediction_type(model_dir, out, prediction_type: str):
    shutil.copytree(model_dir, out)
    cfg_path = out / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "prediction_type": prediction_type}))
    return out


def _header(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return fh.metadata()


def test_a_v_prediction_run_records_it_and_its_export_says_v_whatever_the_resolution(tiny_model_dir, instance_dir,
                                                                                     tmp_path):
    from sdstudio.core.config import build_config
    from sdstudio.core.lora.export import export_checkpoint
    from sdstudio.core.runs.run_dir import RunDir
    from sdstudio.core.training.trainer import train

    model = _with_prediction_type(tiny_model_dir, tmp_path / "v-model", "v_prediction")
    run = train(build_config(tiny_train_values(model, tmp_path / "run", instance_data_dir=str(instance_dir),
                                               instance_prompt="sks", max_train_steps=1, validation_loss=False,
                                               num_validation_images=0)))
    assert run.meta()["base_model"]["prediction_type"] == "v_prediction"
    meta = _header(export_checkpoint(run.path, out=tmp_path / "v.safetensors", dtype="fp32"))
    assert (meta["modelspec.prediction_type"], meta["ss_v_parameterization"]) == ("v", "True")

    # the same record on an SD 2.x base trained at 512 px (SD 2.1-v): v, not guessed from 512 px
    rd = RunDir(run.path)
    rd.write_config({**rd.config(), "resolution": 512},
                    {**rd.meta(), "base_model": {**rd.meta()["base_model"], "family": "sd2"}})
    meta = _header(export_checkpoint(run.path, out=tmp_path / "v2.safetensors", dtype="fp32"))
    assert meta["modelspec.architecture"] == "stable-diffusion-v2-768-v/lora"
    assert (meta["modelspec.prediction_type"], meta["ss_v2"], meta["ss_v_parameterization"]) == ("v", "True", "True")


def test_a_single_file_s_own_statement_decides_its_prediction_type_over_its_config(tiny_model_dir, tmp_path):
    from sdstudio.core.io.atomic import save_safetensors
    from sdstudio.core.models import load_pipeline

    v_config = _with_prediction_type(tiny_model_dir, tmp_path / "v-config", "v_prediction")
    eps_config = tiny_model_dir

    def predicts(path, config) -> str:
        return load_pipeline(str(path), config=str(config)).scheduler.config.prediction_type

    # an epsilon file with A1111's v2-inference.yaml beside it (no parameterization line), loaded with
    # a v-prediction config (as every SD 2 file got SD 2.1-768's)
    base = write_single_file(tiny_model_dir, tmp_path / "base.safetensors")
    (tmp_path / "base.yaml").write_text("model:\n  base_learning_rate: 1.0e-4\n  target: ldm.models.diffusion.ddpm."
                                        "LatentDiffusion\n  params:\n    linear_start: 0.00085\n")
    assert predicts(base, v_config) == "epsilon"
    (tmp_path / "base.yaml").write_text("model:\n  params:\n    parameterization: \"v\"\n    linear_start: 0.00085\n")
    assert predicts(base, eps_config) == "v_prediction"
    (tmp_path / "base.yaml").unlink()
    assert predicts(base, eps_config) == "epsilon"  # nothing stated (not SD 2): the config's

    # stated in the header, or by ComfyUI's v_pred key
    from safetensors.torch import load_file

    tensors = load_file(str(base))
    save_safetensors(tensors, tmp_path / "spec.safetensors", metadata={"modelspec.prediction_type": "v"})
    assert predicts(tmp_path / "spec.safetensors", eps_config) == "v_prediction"
    import torch

    save_safetensors({**tensors, "v_pred": torch.zeros(0)}, tmp_path / "marked.safetensors")
    assert predicts(tmp_path / "marked.safetensors", eps_config) == "v_prediction"
