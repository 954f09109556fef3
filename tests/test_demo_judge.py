"""The demo picture judge reads code-drawn pictures correctly, so its verdicts on generated ones can be trusted."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from sdstudio.demo import judge
from sdstudio.core.paths import data_dir
from sdstudio.demo.shapes import ALL_COLOURS, ALL_SHAPES, BACKGROUNDS, random_scene, render


def test_reads_random_code_drawn_scenes() -> None:
    rng = random.Random(3)
    images, captions = [], []
    for _ in range(150):
        scene = random_scene(rng, rng.choice(list(ALL_COLOURS)), rng.choice(ALL_SHAPES), rng.choice(list(BACKGROUNDS)),
                             min_frac=0.25, max_frac=0.8)
        images.append(render(scene))
        captions.append(scene.caption)
    assert judge.accuracy(images, captions)["all"] == 1.0


def test_reads_the_shipped_dataset() -> None:
    folder = data_dir() / "shapes"
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()][::7]
    images = [Image.open(folder / r["file_name"]) for r in rows]
    assert judge.accuracy(images, [r["text"] for r in rows])["all"] == 1.0


def test_wrong_caption_is_refused() -> None:
    scene = random_scene(random.Random(0), "red", "circle", "white")
    image = render(scene)
    assert judge.check_caption(image, "a red circle on a white background") == {
        "colour": True, "shape": True, "background": True}
    result = judge.check_caption(image, "a blue star on a black background")
    assert not any(result.values())


def test_blank_picture_has_no_object() -> None:
    reading = judge.read_image(Image.new("RGB", (64, 64), BACKGROUNDS["gray"]))
    assert (reading.colour, reading.shape, reading.background) == ("none", "none", "gray")


def test_noise_is_not_a_shape() -> None:
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert judge.read_image(Image.fromarray(noise)).shape in ("unknown", "none")


@pytest.mark.parametrize("caption, expected", [
    ("a red circle on a blue background", ("red", "circle", "blue")),
    ("A Pink heart", ("pink", "heart", None)),
    ("a sks shape", (None, None, None)),
])
def test_parse_caption(caption: str, expected: tuple) -> None:
    assert judge.parse_caption(caption) == expected
