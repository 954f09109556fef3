"""Masked loss and subject crops in the trainer (issue 24): masks weigh the loss where the model
sees them, crop boxes replace the centre crop down to the cached latents and SDXL's crop ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import draw_shape_images, tiny_train_values
from sdstudio.core.runs.run_dir import RunDir

QUIET = {"num_validation_images": 0, "validation_loss": False}


def write_masks(folder: Path, value: int | None = None) -> None:
    """A NAME-mask.png beside every image: all `value`, or (None) the image's red pixels."""
    for image in sorted(folder.glob("*.png")):
        if image.stem.endswith("-mask"):
            continue
        arr = np.asarray(Image.open(image).convert("RGB"), dtype=np.int16)
        if value is None:
            mask = ((arr[..., 0] > 150) & (arr[..., 1] < 100)).astype(np.uint8) * 255
        else:
            mask = np.full(arr.shape[:2], value, dtype=np.uint8)
        Image.fromarray(mask, mode="L").save(image.with_name(image.stem + "-mask.png"))


def _trainer(values: dict):
    from sdstudio.core.config import build_config
    from sdstudio.core.training.trainer import Trainer

    logs: list[str] = []
    trainer = Trainer(build_config(values), lambda e: logs.append(getattr(e, "message", "")), None, None)
    return trainer, logs


def _lora(run) -> dict:
    from safetensors.torch import load_file

    status = RunDir(run.path).status()
    assert status["state"] == "finished"
    return load_file(str(RunDir(run.path).checkpoint(status["step"]).weights))


def test_all_zero_masks_with_unmasked_weight_0_leave_the_lora_at_its_initial_weights(
        tiny_model_dir, tmp_path, runs_root, one_torch_thread, monkeypatch):
    """Weight decay is 0 here: AdamW's decoupled decay shrinks weights by lr * decay at every step
    even with zero gradients, which is not the loss's doing."""
    import torch

    from sdstudio.core.training.setup import TrainingModels

    folder = tmp_path / "instance"
    draw_shape_images(folder, 4, (230, 30, 30))
    write_masks(folder, 0)
    initial: list = []
    original = TrainingModels._add_adapters

    def record(self):
        original(self)
        initial.extend(p.detach().clone() for p in self.params)

    monkeypatch.setattr(TrainingModels, "_add_adapters", record)
    trainer, logs = _trainer(tiny_train_values(
        tiny_model_dir, tmp_path / "run", instance_data_dir=str(folder), instance_prompt="a sks shape",
        masked_loss=True, unmasked_weight=0.0, adam_weight_decay=0.0, learning_rate=1e-2, max_train_steps=2,
        checkpointing_steps=2, **QUIET))
    run = trainer.run()
    assert RunDir(run.path).status()["state"] == "finished"
    assert len(initial) == len(trainer.models.params) > 0
    assert all(torch.equal(a, b.detach()) for a, b in zip(initial, trainer.models.params))
    assert [m["loss"] for m in RunDir(run.path).metrics()] == [0.0, 0.0]
    assert "masks: 4 of 4 images, mean coverage 0 %; masked_loss on, unmasked_weight 0" in logs
    assert any(line.startswith("4 masks are empty") for line in logs)


def test_all_white_masks_train_exactly_like_an_unmasked_run(tiny_model_dir, tmp_path, runs_root, one_torch_thread):
    import torch

    folder = tmp_path / "instance"
    draw_shape_images(folder, 4, (230, 30, 30))
    write_masks(folder, 255)
    runs = {}
    for masked in (True, False):
        trainer, logs = _trainer(tiny_train_values(
            tiny_model_dir, tmp_path / f"run-{masked}", instance_data_dir=str(folder), instance_prompt="a sks shape",
            masked_loss=masked, learning_rate=1e-2, max_train_steps=2, checkpointing_steps=2, **QUIET))
        runs[masked] = _lora(trainer.run())
        state = "masked_loss on, unmasked_weight 0" if masked else "masked_loss off (the masks are not used)"
        assert f"masks: 4 of 4 images, mean coverage 100 %; {state}" in logs
    assert runs[True].keys() == runs[False].keys()
    assert any(v.abs().max() > 0 for k, v in runs[True].items() if "lora_B" in k or "lora.up" in k)  # it trained
    for key, value in runs[False].items():
        assert torch.allclose(runs[True][key], value, rtol=1e-4, atol=1e-6), key


def _source(model_dir: Path, values: dict):
    import torch

    from sdstudio.core.config import build_config
    from sdstudio.core.models import load_pipeline
    from sdstudio.core.training.examples import ExampleSource, instance_examples

    cfg = build_config(values)
    examples, _ = instance_examples(cfg)
    pipe = load_pipeline(str(model_dir))
    source = ExampleSource(cfg, pipe.vae, pipe.text_encoder, pipe.tokenizer, torch.device("cpu"), torch.float32,
                           all_square=all(ex.fixed_crop for ex in examples))
    source.precompute(examples)
    return source, examples, pipe


@pytest.mark.parametrize("cache", [True, False])
def test_mask_downsampling_is_the_block_average_of_the_centre_crop_on_an_odd_sized_image(
        tiny_model_dir, tmp_path, cache):
    from sdstudio.core.training.examples import micro_batch_generator

    folder = tmp_path / "odd"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 32, 3), dtype=np.uint8)).save(folder / "a.png")  # 32 wide, 45 tall
    mask = rng.integers(0, 256, (45, 32), dtype=np.uint8)
    Image.fromarray(mask, mode="L").save(folder / "a-mask.png")
    # by hand: resolution 32 keeps the scale at 1; the centre crop keeps rows 6..37; the tiny VAE
    # halves each side, so each latent pixel is the mean of a 2x2 block of the mask
    block = mask[6:38].astype(np.float64).reshape(16, 2, 16, 2).mean(axis=(1, 3)) / 255.0
    weight = 0.25 + 0.75 * block  # unmasked_weight 0.25
    source, examples, _ = _source(tiny_model_dir, tiny_train_values(
        tiny_model_dir, tmp_path / "run", instance_data_dir=str(folder), instance_prompt="x", masked_loss=True,
        unmasked_weight=0.25, center_crop=True, random_flip=True, cache_latents=cache, train_batch_size=1))
    assert source.cache_latents is cache
    seen = set()
    for micro in range(8):
        latents, _, weights = source.draw(examples, micro_batch_generator(0, micro, 0))
        assert weights.shape == (1, 1, *latents.shape[-2:]) == (1, 1, 16, 16)
        got = weights[0, 0].double().numpy()
        flipped = np.allclose(got, weight[:, ::-1], atol=1e-6)
        assert flipped or np.allclose(got, weight, atol=1e-6)
        seen.add(flipped)
    assert seen == {True, False}  # the flip mirrors the mask with the picture


def test_a_crop_box_reaches_the_cached_latents_and_sdxl_crop_ids(tiny_model_dir, tmp_path):
    import torch

    from sdstudio.core.masks.crops import write_crops
    from sdstudio.core.training.examples import micro_batch_generator

    folder = tmp_path / "boxed"
    draw_shape_images(folder, 2, (230, 30, 30), size=40)
    write_crops(folder, {"000.png": (4, 2, 30, 24)})  # a wide box: its leftover is cropped centred
    source, examples, pipe = _source(tiny_model_dir, tiny_train_values(
        tiny_model_dir, tmp_path / "run", instance_data_dir=str(folder), instance_prompt="x", center_crop=False,
        cache_latents=True, random_flip=False))
    boxed = next(ex for ex in examples if ex.path.name == "000.png")
    # independently: cut the box, resize its short side to 32 (30x24 -> 40x32), keep the centre 32x32
    image = Image.open(folder / "000.png").convert("RGB")
    seen = image.crop((4, 2, 34, 26)).resize((40, 32), Image.Resampling.BILINEAR).crop((4, 0, 36, 32))
    pixels = torch.from_numpy(np.asarray(seen, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        dist = pipe.vae.encode(pixels).latent_dist
    cached = source._latent_cache[(boxed.path, False)]
    assert torch.allclose(cached, torch.cat([dist.mean, dist.std], dim=1)[0], atol=1e-5)
    assert boxed.box == (4, 2, 30, 24) and source.cache_latents  # a boxed picture has one fixed crop
    _, conds, _ = source.draw([boxed], micro_batch_generator(0, 0, 0))
    # SDXL ids: the file's size; the crop's corner in the whole picture at the box's scale 32/24
    # (box corner (4, 2) -> (5, 3), plus the centred leftover (4, 0)); the target
    assert conds == [(40, 40, 3, 9, 32, 32)]


def test_masked_loss_without_any_mask_is_refused_saying_how_to_make_masks(tmp_path, tiny_model_dir):
    from sdstudio.core.config import build_config
    from sdstudio.core.errors import ConfigError
    from sdstudio.core.training.examples import instance_examples

    folder = tmp_path / "instance"
    draw_shape_images(folder, 3, (230, 30, 30))
    values = tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(folder), instance_prompt="x")
    with pytest.raises(ConfigError, match="masked_loss") as err:
        instance_examples(build_config({**values, "masked_loss": True}))
    assert "sdstudio dataset mask" in str(err.value)
    from sdstudio.core.training.examples import subject_lines

    write_masks(folder, None)
    (folder / "002-mask.png").unlink()
    cfg = build_config({**values, "masked_loss": True, "unmasked_weight": 0.1})
    examples, _ = instance_examples(cfg)
    lines = subject_lines(cfg, examples)
    assert lines[0].startswith("masks: 2 of 3 images, mean coverage ") and lines[0].endswith(
        "masked_loss on, unmasked_weight 0.1")
    assert lines[1] == "1 images without a mask train on the whole picture (weight 1): 002.png"


def test_sdxl_with_buckets_masks_and_a_crop_box_trains_a_step(tiny_sdxl_dir, tmp_path, runs_root, one_torch_thread):
    from sdstudio.core.masks.crops import write_crops
    from test_buckets import mixed_aspect_folder

    folder = mixed_aspect_folder(tmp_path / "mixed")
    write_masks(folder, None)
    write_crops(folder, {"01.png": (12, 0, 40, 40)})  # written into metadata.jsonl, beside the caption
    assert json.loads((folder / "metadata.jsonl").read_text().splitlines()[1])["crop"] == [12, 0, 40, 40]
    trainer, logs = _trainer(tiny_train_values(
        tiny_sdxl_dir, tmp_path / "run", train_data_dir=str(folder), enable_bucket=True, bucket_reso_steps=8,
        train_batch_size=2, masked_loss=True, center_crop=True, max_train_steps=1, checkpointing_steps=1, **QUIET))
    run = trainer.run()
    assert RunDir(run.path).status()["state"] == "finished"
    source = trainer.models.source
    assert type(source).__name__ == "SdxlSource" and source.cache_latents
    assert {k: m.shape[-2:] for k, m in source._mask_cache.items()} == {  # masks cached beside the latents
        k: m.shape[-2:] for k, m in source._latent_cache.items()}
    assert "crop boxes: 1 of 6 images use their subject crop instead of the centre crop" in logs
    assert any(line.startswith("masks: 6 of 6 images, mean coverage ") for line in logs)
    boxed = next(ex for ex in trainer.examples if ex.path.name == "01.png")
    assert boxed.placement.bucket == (32, 32)  # placed by its square box, not by the wide file (64x40)


def test_the_dataset_preview_shows_the_crop_box_as_the_trainer_renders_it():
    from sdstudio.core.training.preview import preview

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    view, seen = preview(image, 32, box=(10, 6, 24, 36))  # a tall box: its leftover is cropped centred
    expected = image.crop((10, 6, 34, 42)).resize((32, 48), Image.Resampling.BILINEAR).crop((0, 8, 32, 40))
    assert np.array_equal(np.asarray(seen), np.asarray(expected))
    assert view.outline() == (10, 6 + 8 * 24 / 32, 34, 6 + 40 * 24 / 32)  # in the file's pixels
    view, seen = preview(image, 256, bucketed=True, box=(10, 6, 24, 36))  # the bucket nearest the box's aspect
    assert seen.size == view.target == (192, 320)
