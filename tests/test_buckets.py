"""Aspect-ratio buckets: sizes, placement, the upscale limit, one-bucket batches in a fixed
order, the dataset check's table, and a training run on mixed-aspect pictures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_train_values
from sdstudio.core.training import buckets as bk


def mixed_aspect_folder(folder: Path, captions: bool = True) -> Path:
    """Wide, tall and square pictures (a red bar across or down a blue field)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    sizes = [(48, 32), (64, 40), (32, 48), (40, 64), (40, 40), (36, 36)]
    lines = []
    for i, (w, h) in enumerate(sizes):
        im = Image.new("RGB", (w, h), (30, 40 + 20 * i, 200))
        ImageDraw.Draw(im).rectangle((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=(230, 30, 30))
        im.save(folder / f"{i:02d}.png")
        lines.append(json.dumps({"file_name": f"{i:02d}.png", "text": f"a red box {'wide' if w > h else 'tall'}"}))
    if captions:
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_buckets_have_about_the_same_area_in_64px_steps():
    sizes = bk.bucket_sizes(1024)
    assert (1024, 1024) in sizes and (896, 1152) in sizes and (1152, 896) in sizes
    for w, h in sizes:
        assert w % 64 == 0 and h % 64 == 0
        assert 512 <= w <= 2048 and 512 <= h <= 2048
        short, long = min(w, h), max(w, h)
        assert short * long <= 1024 * 1024 and short * (long + 64) > 1024 * 1024  # the longest side that fits
    assert {(h, w) for w, h in sizes} == set(sizes)  # every shape in both orientations


def test_each_image_goes_to_the_nearest_aspect_and_is_never_upscaled_past_the_limit():
    sizes = bk.bucket_sizes(512)
    portrait = bk.place(819, 1024, sizes)
    assert portrait.bucket == (448, 576)
    assert portrait.resized[0] >= 448 and portrait.resized[1] >= 576
    assert min(portrait.resized[0] - 448, portrait.resized[1] - 576) == 0  # the smallest cover
    assert bk.too_small(portrait, 2.0) is None
    small = bk.place(100, 100, sizes)
    reason = bk.too_small(small, 2.0)
    assert reason and "5.12x upscale" in reason and "max_upscale" in reason
    left, top = portrait.crop(center=True)
    assert (left, top) == ((portrait.resized[0] - 448) // 2, (portrait.resized[1] - 576) // 2)


def test_batches_come_from_one_bucket_and_the_order_is_a_function_of_the_seed():
    shapes = [(64, 32)] * 5 + [(32, 64)] * 3 + [(48, 48)] * 4
    batches = bk.BucketBatches(shapes, batch_size=2)
    epoch = [batches.batch(i, seed=7) for i in range(batches.per_epoch)]
    for b in epoch:
        assert len(b) == 2 and len({shapes[i] for i in b}) == 1
    assert set().union(*epoch) == set(range(len(shapes)))  # every image each epoch
    again = bk.BucketBatches(shapes, batch_size=2)
    assert [again.batch(i, seed=7) for i in range(20)] == [batches.batch(i, seed=7) for i in range(20)]
    assert [batches.batch(i, seed=8) for i in range(20)] != [batches.batch(i, seed=7) for i in range(20)]
    # batch 13 asked for cold (a resumed run) is batch 13 of the uninterrupted stream
    assert bk.BucketBatches(shapes, batch_size=2).batch(13, seed=7) == batches.batch(13, seed=7)


def test_dataset_check_prints_each_images_bucket_and_the_bucket_table(tmp_path):
    folder = mixed_aspect_folder(tmp_path / "mixed")
    out = subprocess.run([sys.executable, "-m", "sdstudio", "dataset", "check", str(folder), "--resolution", "32",
                          "--bucket-reso-steps", "8"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "buckets at 32 px (8 px steps, max upscale 2x):" in out.stdout
    table = out.stdout.split("buckets at", 1)[1]
    assert "40x24" in table and "24x40" in table and "32x32" in table
    line = next(l for l in out.stdout.splitlines() if l.split()[1:2] == ["00.png"])
    assert "48x32" in line and "40x24" in line
    js = json.loads(subprocess.run([sys.executable, "-m", "sdstudio", "dataset", "check", str(folder), "--json",
                                    "--resolution", "32", "--bucket-reso-steps", "8"],
                                   capture_output=True, text=True, timeout=120).stdout)
    assert {r["name"]: r["bucket"] for r in js["files"]}["02.png"] == "24x40"
    assert sum(c["images"] for c in js["buckets"]["counts"]) == 6


def test_bucket_config_is_validated():
    from sdstudio.core.config import build_config
    from sdstudio.core.errors import ConfigError

    with pytest.raises(ConfigError, match="resolution"):
        build_config({"train_data_dir": ".", "enable_bucket": True, "resolution": 520})
    with pytest.raises(ConfigError, match="max_upscale"):
        build_config({"train_data_dir": ".", "max_upscale": 0.5})


def test_training_with_buckets_encodes_each_batch_at_its_buckets_shape(tiny_model_dir, tmp_path, runs_root, one_torch_thread,
                                                                      monkeypatch):
    from sdstudio.core.config import build_config
    from sdstudio.core.runs.run_dir import RunDir
    from sdstudio.core.training.loss import StepLoss
    from sdstudio.core.training.trainer import Trainer

    folder = mixed_aspect_folder(tmp_path / "mixed")
    (folder / "tiny.png").write_bytes((folder / "00.png").read_bytes())  # duplicate: skipped by the check
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", train_data_dir=str(folder), enable_bucket=True,
                                         bucket_reso_steps=8, train_batch_size=2, random_flip=True, max_train_steps=3,
                                         validation_steps=100))
    trainer = Trainer(cfg, None, None, None)
    shapes = []
    original = StepLoss._group_loss

    def spy(self, lat, *args):
        shapes.append(tuple(lat.shape))
        return original(self, lat, *args)

    monkeypatch.setattr(StepLoss, "_group_loss", spy)
    run = trainer.run()
    assert RunDir(run.path).status()["state"] == "finished"
    buckets = {ex.placement.bucket for ex in trainer.examples}
    assert buckets == {(40, 24), (24, 40), (32, 32)}
    latent_shapes = {(s[3] * 2, s[2] * 2) for s in shapes}  # the VAE halves each side
    assert latent_shapes <= buckets and len(latent_shapes) >= 2
    assert all(s[0] == 2 for s in shapes)  # one bucket per batch: never padded or mixed


def test_cached_bucket_latents_equal_fresh_ones_draw_for_draw(tiny_model_dir, tmp_path):
    import torch

    from sdstudio.core.config import build_config
    from sdstudio.core.models import load_pipeline
    from sdstudio.core.training.examples import ExampleSource, instance_examples, micro_batch_generator

    folder = mixed_aspect_folder(tmp_path / "mixed")
    pipe = load_pipeline(str(tiny_model_dir))
    sources = []
    for cache in (True, False):
        cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", train_data_dir=str(folder),
                                             enable_bucket=True, bucket_reso_steps=8, center_crop=True,
                                             random_flip=True, cache_latents=cache))
        examples, _ = instance_examples(cfg)
        source = ExampleSource(cfg, pipe.vae, pipe.text_encoder, pipe.tokenizer, torch.device("cpu"), torch.float32)
        source.precompute(examples)
        sources.append(source)
    assert sources[0].cache_latents and not sources[1].cache_latents
    assert {m.shape[1:] for m in sources[0]._latent_cache.values()} == {(12, 20), (20, 12), (16, 16)}  # per bucket
    wide = [ex for ex in examples if ex.placement.bucket == (40, 24)]
    for micro in range(3):
        (a, ca), (b, cb) = (s.encode(wide, micro_batch_generator(0, micro, 0)) for s in sources)
        assert torch.allclose(a, b, atol=1e-5) and ca == cb


def test_the_train_form_has_a_buckets_row_that_reads_and_writes_true_and_false():
    from sdstudio.tui.widgets.config_form import FIELD_NAMES, from_text, to_text

    assert "enable_bucket" in FIELD_NAMES
    assert from_text("enable_bucket", "true") is True and from_text("enable_bucket", "off") is False
    assert to_text("enable_bucket", False) == "false"
