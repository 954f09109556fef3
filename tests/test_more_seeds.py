"""`sdstudio score --more-seeds K`: the checkpoints the samples cannot tell apart are sampled again on
fresh seeds, from their saved LoRA weights, into the run's samples/ (so the studio shows them and
scores count them), until the pick is clear or the budget is spent. A real tiny run, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_dreambooth_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Checkpoints at steps 2 and 4, each sampled on 2 prompts x seeds 0, 1 (the random tiny model
    draws noise, so the judge tells no checkpoint from another)."""
    from conftest import draw_shape_images, tiny_train_values
    from sdstudio.core.config import build_config
    from sdstudio.core.training.trainer import train

    root = tmp_path_factory.mktemp("more-seeds")
    draw_shape_images(root / "instance", 4, (230, 30, 30))
    cfg = build_config(tiny_train_values(tiny_model_dir, root / "run", instance_data_dir=str(root / "instance"),
                                         instance_prompt="a photo of sks shape", learning_rate=1e-2,
                                         validation_prompts=["a photo of sks shape", "a red circle"]))
    return train(cfg)


def test_more_seeds_samples_the_contenders_until_the_budget_is_spent(tiny_dreambooth_run, tmp_path: Path,
                                                                     capsys, one_torch_thread) -> None:
    import shutil

    from sdstudio.cli import main
    from sdstudio.core.runs.run_dir import RunDir
    from sdstudio.core.training.scoring import read_scores

    run = RunDir(shutil.copytree(tiny_dreambooth_run.path, tmp_path / "run"))
    before = {(s.step, s.prompt_index, s.seed) for s in run.samples()}
    assert main(["score", str(run.path), "--scorer", "demo"]) == 0
    first = capsys.readouterr().out
    assert "recommended: step 4, not distinguishable from step 2 (intervals overlap): subject 0.00 [0.00–0.00]" in first
    assert f"sample them again: sdstudio score {run.path} --more-seeds" in first
    assert main(["score", str(run.path), "--scorer", "demo", "--more-seeds", "3"]) == 0
    out = capsys.readouterr().out
    # rounds of the run's num_validation_images (2) seeds, fresh ones (the run used 0 and 1), the same
    # for every contender; the budget is 3 new seeds per checkpoint
    assert "round 1: steps 2, 4 on seeds 2-3 (8 images" in out and "round 2: steps 2, 4 on seed 4 (4 images" in out
    assert "more seeds: budget spent (3 new seeds per checkpoint, 2 rounds" in out
    assert "still not distinguishable from step 2" in out
    added = {(s.step, s.prompt_index, s.seed) for s in run.samples()} - before
    assert added == {(step, p, seed) for step in (2, 4) for p in (0, 1) for seed in (2, 3, 4)}
    table = read_scores(run)
    assert {r.step: r.images for r in table.rows} == {0: 4, 2: 10, 4: 10}  # scores include the new samples
    assert table.row(4).intervals["demo_subject"] == (0.0, 0.0)
    assert json.loads(run.scores_jsonl.read_text().splitlines()[-1])["recommendation"]["contenders"] == [2]


def test_a_new_sample_is_the_picture_the_trainer_drew_for_that_seed(tiny_dreambooth_run, tmp_path: Path,
                                                                    one_torch_thread) -> None:
    # the checkpoint's saved LoRA weights, the run's prompts and sampler settings: seed 1 again at step 4
    # gives the trainer's own validation sample back
    import shutil

    import numpy as np
    from PIL import Image

    from sdstudio.core.config import TrainConfig
    from sdstudio.core.runs.run_dir import RunDir
    from sdstudio.core.training import more_seeds

    run = RunDir(shutil.copytree(tiny_dreambooth_run.path, tmp_path / "run"))
    drawn = {s.prompt_index: np.asarray(Image.open(s.path).convert("RGB"), dtype=np.float32)
             for s in run.samples() if s.step == 4 and s.seed == 1}
    cfg = {**TrainConfig().to_dict(), **run.config()}
    generator = more_seeds.load_generator(cfg, device="cpu")
    more_seeds.sample_step(generator, run, 4, [1], cfg)
    again = {s.prompt_index: np.asarray(Image.open(s.path).convert("RGB"), dtype=np.float32)
             for s in run.samples() if s.step == 4 and s.seed == 1}
    assert sorted(again) == sorted(drawn) == [0, 1]
    other = {s.prompt_index: np.asarray(Image.open(s.path).convert("RGB"), dtype=np.float32)
             for s in run.samples() if s.step == 4 and s.seed == 0}
    for index in drawn:
        same, seed_apart = np.abs(again[index] - drawn[index]).mean(), np.abs(other[index] - drawn[index]).mean()
        print(f"prompt {index}: {same:.3f} from the trainer's sample, {seed_apart:.1f} from another seed's (of 255)")
        assert same < 1.0 < seed_apart, index
