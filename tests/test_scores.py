"""Scoring a run's checkpoints: the demo judge reads meaning from pictures; CLIP and DINO (tiny models
built from configs, loaded by path, nothing downloaded) go through the same plumbing; `sdstudio score`
writes scores.jsonl and `sdstudio export --best` takes its pick."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sdstudio.core.errors import SdstudioError
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training.scoring import RunScorer, read_scores
from sdstudio.demo.shapes import random_scene, render

INSTANCE_PROMPT = "a sks shape"
ORDINARY = ("a red circle on a white background", "a blue square on a gray background")


def _instance_dir(root: Path) -> Path:
    folder = root / "instance"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for i in range(4):
        render(random_scene(rng, "pink", "heart", "white")).save(folder / f"{i:02d}.png")
    return folder


def _scene(rng: random.Random, colour: str, shape: str, background: str = "white"):
    return render(random_scene(rng, colour, shape, background))


def drift_run(root: Path) -> RunDir:
    """A DreamBooth run folder whose samples tell a story: step 0 (the base) draws the captions but
    not the subject; step 10 draws both; step 20 draws the subject for every prompt (drift)."""
    instance = _instance_dir(root)
    run = RunDir(root / "run")
    run.write_config({"pretrained_model_name_or_path": "demo", "instance_data_dir": str(instance),
                      "instance_prompt": INSTANCE_PROMPT, "resolution": 64, "max_train_steps": 20}, {"version": "test"})
    rng = random.Random(1)
    for step in (0, 10, 20):
        prompts = (INSTANCE_PROMPT, *ORDINARY)
        for pi, prompt in enumerate(prompts):
            for seed in range(3):
                if pi == 0:
                    image = _scene(rng, "pink", "heart") if step else _scene(rng, "green", "triangle")
                elif step == 20:
                    image = _scene(rng, "pink", "heart")
                else:
                    colour, shape = prompt.split()[1:3]
                    image = _scene(rng, colour, shape, prompt.split()[-2])
                run.add_sample(step, pi, prompt, seed, image)
        if step:
            ckpt = run.checkpoint_path(step)
            ckpt.mkdir(parents=True)
            (ckpt / "pytorch_lora_weights.safetensors").write_bytes(b"")
            run.append_metrics({"step": step, "val_loss": 0.05 - step / 1000, "val_seconds": 0.1})
    return run


def test_demo_judge_scores_mean_what_the_pictures_show(tmp_path: Path) -> None:
    run = drift_run(tmp_path)
    table = RunScorer(run, ["demo"]).score()
    by_step = {r.step: r.scores for r in table.rows}
    assert [r.step for r in table.rows] == [0, 10, 20] and not table.rows[0].checkpoint
    assert by_step[0]["demo_subject"] == 0.0 and by_step[10]["demo_subject"] == 1.0 == by_step[20]["demo_subject"]
    assert by_step[0]["demo_prompt"] == 1.0 == by_step[10]["demo_prompt"] and by_step[20]["demo_prompt"] == 0.0
    assert 0.5 < by_step[10]["demo_nearest"] < 1.0
    assert table.row(20).val_loss == pytest.approx(0.03)  # from metrics.jsonl
    rec = table.recommendation
    assert rec.step == 10, rec
    assert rec.reason.startswith("step 10: subject 1.00 [1.00–1.00] (best)") and "later steps lose prompt" in rec.reason
    # the file is the contract: another reader gets the same table back
    again = read_scores(run)
    assert [r.to_json() for r in again.rows] == [r.to_json() for r in table.rows]
    assert again.recommendation == rec


def test_a_copied_training_image_reads_as_memorized(tmp_path: Path) -> None:
    run = drift_run(tmp_path)
    from PIL import Image

    copy = Image.open(sorted(Path(run.config()["instance_data_dir"]).iterdir())[0])
    for seed in range(3):
        run.add_sample(10, 0, INSTANCE_PROMPT, seed, copy)
    table = RunScorer(run, ["demo"]).score()
    assert table.row(10).scores["demo_nearest"] == pytest.approx(1.0)
    assert table.row(20).scores["demo_nearest"] < 0.99


def _tiny_clip(folder: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from sdstudio.demo.tiny import write_clip_tokenizer

    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "tok", "a sks shape red circle blue square".split()))
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    CLIPModel(config).save_pretrained(folder / "clip")
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder / "clip")
    return folder / "clip"


def _tiny_dino(folder: Path) -> Path:
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                          image_size=32, patch_size=8)
    Dinov2Model(config).save_pretrained(folder / "dino")
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder / "dino")
    return folder / "dino"


def test_clip_and_dino_scorers_load_by_path_and_fill_their_columns(tmp_path: Path, one_torch_thread) -> None:
    run = drift_run(tmp_path)
    clip, dino = _tiny_clip(tmp_path / "models"), _tiny_dino(tmp_path / "models")
    table = RunScorer(run, ["clip", "dino"], clip_model=str(clip), dino_model=str(dino)).score()
    for row in table.rows:
        s = row.scores
        assert set(s) == {"clip_prompt", "clip_subject", "clip_nearest", "dino_subject", "dino_nearest"}, s
        assert all(-1.0 <= v <= 1.0 for v in s.values())
        assert s["clip_nearest"] >= s["clip_subject"] and s["dino_nearest"] >= s["dino_subject"]
        assert set(row.seconds) == {"clip", "dino"}
    # the same pictures give the same numbers; different pictures give different ones
    assert table.row(10).scores["dino_subject"] != table.row(0).scores["dino_subject"]
    rec = table.recommendation
    assert rec.subject_metric == "dino_subject" and rec.prompt_metric == "clip_prompt" and rec.step in (10, 20)
    assert "DINO" in rec.reason and "CLIP-T" in rec.reason


def _tiny_dino_v1(folder: Path) -> Path:
    """A DINO v1-style checkpoint: a ViT saved without a pooler (as facebook/dino-vits16 is)."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                       image_size=32, patch_size=8)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder / "dino-v1")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder / "dino-v1")
    return folder / "dino-v1"


def test_a_dino_v1_checkpoint_scores_the_same_at_every_load(tmp_path: Path, one_torch_thread) -> None:
    # transformers gives a checkpoint without pooler weights a fresh random pooler at each load:
    # the class token is what DINO's embedding is
    from sdstudio.core.training.scorers import DinoScorer

    run = drift_run(tmp_path)
    dino = _tiny_dino_v1(tmp_path / "models")
    first = RunScorer(run, ["dino"], dino_model=str(dino)).score(rescore=True)
    second = RunScorer(run, ["dino"], dino_model=str(dino)).score(rescore=True)
    assert [r.scores for r in first.rows] == [r.scores for r in second.rows]
    import torch
    from transformers import ViTModel

    scorer = DinoScorer(str(dino))
    image = _scene(random.Random(3), "pink", "heart")
    pixels = scorer.processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cls = ViTModel.from_pretrained(dino, add_pooling_layer=False)(pixel_values=pixels).last_hidden_state[:, 0]
    assert torch.allclose(scorer.embed_images([image]), torch.nn.functional.normalize(cls, dim=-1), atol=1e-6)


def test_the_clip_scorer_embeds_with_clips_projection(tmp_path: Path, one_torch_thread) -> None:
    # get_image_features / get_text_features return a tensor under transformers 4.x and an output
    # object under 5.x (pyproject allows both): either way the embedding is the projected pooled token
    import torch

    from sdstudio.core.training.scorers import ClipScorer

    scorer = ClipScorer(str(_tiny_clip(tmp_path / "models")))
    model, image = scorer.model, _scene(random.Random(4), "red", "circle")
    pixels = scorer.processor(images=[image], return_tensors="pt")["pixel_values"]
    tok = scorer.processor(text=["a red circle"], padding=True, return_tensors="pt")
    with torch.no_grad():
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        txt = model.text_projection(model.text_model(input_ids=tok["input_ids"],
                                                     attention_mask=tok["attention_mask"]).pooler_output)
    assert torch.allclose(scorer.embed_images([image]), torch.nn.functional.normalize(img, dim=-1), atol=1e-6)
    assert torch.allclose(scorer.embed_texts(["a red circle"]), torch.nn.functional.normalize(txt, dim=-1), atol=1e-6)


def test_a_scorer_model_that_is_not_there_is_named(tmp_path: Path) -> None:
    run = drift_run(tmp_path)
    with pytest.raises(SdstudioError, match="clip_model = .*nowhere.*neither a local folder nor in the Hugging Face cache"):
        RunScorer(run, ["clip"], clip_model=str(tmp_path / "nowhere"))


def test_score_command_writes_scores_jsonl_and_prints_json(tmp_path: Path, capsys) -> None:
    from sdstudio.cli import main

    run = drift_run(tmp_path)
    assert main(["score", str(run.path), "--json"]) == 0  # default scorer on a demo-model run: the judge
    out = json.loads(capsys.readouterr().out)
    assert out["scorers"] == ["demo"] and out["recommendation"]["step"] == 10
    assert [r["step"] for r in out["rows"]] == [0, 10, 20]
    lines = [json.loads(x) for x in run.scores_jsonl.read_text().splitlines()]
    assert lines[-1]["recommendation"]["step"] == 10 and len(lines) == 4
    assert main(["score", str(run.path)]) == 0  # incremental: nothing to score again
    text = capsys.readouterr().out
    assert "▶     10" in text and "recommended: step 10" in text and "sdstudio export" in text


def test_export_best_without_scores_says_what_to_run(tmp_path: Path, capsys) -> None:
    from sdstudio.cli import main

    run = drift_run(tmp_path)
    assert main(["export", str(run.path), "--best"]) == 2
    assert f"run `sdstudio score {run.path}` first" in capsys.readouterr().err


def test_a_text_to_image_run_is_scored_on_its_captions(tmp_path: Path) -> None:
    from test_tui_fixtures import make_dataset

    data = make_dataset(tmp_path / "data", count=4)  # captioned shapes from the shipped sample set
    captions = [json.loads(x)["text"] for x in (data / "metadata.jsonl").read_text().splitlines()]
    run = RunDir(tmp_path / "run")
    run.write_config({"pretrained_model_name_or_path": "demo", "train_data_dir": str(data), "resolution": 64},
                     {"version": "test"})
    rng = random.Random(2)
    for step in (0, 10, 20):
        for pi, caption in enumerate(captions[:2]):
            colour, shape = caption.split()[1:3]
            wrong = step == 20  # the last step draws the wrong shape for every caption
            run.add_sample(step, pi, caption, 0, _scene(rng, colour, "heart" if wrong else shape, caption.split()[-2]))
        if step:
            run.checkpoint_path(step).mkdir(parents=True)
            (run.checkpoint_path(step) / "pytorch_lora_weights.safetensors").write_bytes(b"")
    table = RunScorer(run, ["demo"]).score()
    assert {k for r in table.rows for k in r.scores} == {"demo_prompt", "demo_nearest"}  # no subject without DreamBooth
    assert [r.scores["demo_prompt"] for r in table.rows] == [1.0, 1.0, 0.0]
    assert table.recommendation.step == 10 and table.recommendation.subject_metric is None


def test_a_missing_scorer_model_never_stops_a_training(tiny_model_dir, instance_dir, tmp_path: Path) -> None:
    from conftest import tiny_train_values
    from sdstudio.core.config import build_config
    from sdstudio.core.events import LogEvent
    from sdstudio.core.training.trainer import train

    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="a photo of sks shape", scorers=["clip"],
                                         clip_model=str(tmp_path / "no-clip-here")))
    warnings: list[str] = []
    run = train(cfg, on_event=lambda e: warnings.append(e.message) if isinstance(e, LogEvent) and e.level == "warning" else None)
    assert run.status()["state"] == "finished" and [c.step for c in run.checkpoints()] == [2, 4]
    assert len(warnings) == 1 and warnings[0].startswith("scoring is off for this run: clip_model = ")
    assert f"sdstudio score {run.path}" in warnings[0]
