"""The busy-background demo set of benchmarks/masked_dreambooth.py: exact masks, and a leakage
measure that tells the demo world's plain backgrounds from the busy ones."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from sdstudio.core.paths import data_dir
from sdstudio.demo import busy_dreambooth as busy
from sdstudio.demo.masker import DemoMasker
from sdstudio.demo.shapes import ALL_COLOURS, random_scene, render


def test_the_busy_set_keeps_the_subject_and_its_mask_is_exact(tmp_path):
    source = data_dir() / "dreambooth" / "pink-heart"
    assert busy.write_busy_set(source, tmp_path / "busy", seed=0) == 10
    for path in sorted(source.glob("*.png"))[:3]:
        plain = Image.open(path).convert("RGB")
        picture = np.asarray(Image.open(tmp_path / "busy" / path.name).convert("RGB"), dtype=np.float32)
        mask = np.asarray(Image.open(tmp_path / "busy" / f"{path.stem}-mask.png"))
        subject = np.asarray(DemoMasker().mask(plain, "the pink heart")) > 0
        inside = mask == 255
        assert abs(mask.sum() / 255 - subject.sum()) <= 0.05 * subject.sum()  # the heart's area, edges partial
        assert np.abs(picture[inside] - np.asarray(ALL_COLOURS["pink"])).max() <= 1  # pure subject where white
        assert busy.leaks(Image.fromarray(picture.astype("uint8")))  # and a busy background around it
        assert (mask[~subject] < 255).all()  # nothing of the background is called subject


def test_background_spread_is_flat_for_demo_pictures_and_high_for_busy_ones():
    rng = random.Random(3)
    for colour, shape, background in (("red", "star", "white"), ("blue", "circle", "black"), ("pink", "heart", "gray")):
        assert busy.background_spread(render(random_scene(rng, colour, shape, background))) < 1.0
    assert min(busy.background_spread(busy.busy_background(random.Random(s), 64)) for s in range(5)) > busy.LEAK_SPREAD
