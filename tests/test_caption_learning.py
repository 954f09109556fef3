"""The whole loop on a CPU: caption a caption-less folder with the demo captioner, train a
text-to-image LoRA on it, and it learns as well as the same run on hand-written captions.

The folder is the DreamBooth sample (ten pink hearts the demo model has never drawn), so learning
shows: the picture judge counts pink hearts in samples of the same prompts and seeds from both
LoRAs. Slow (two 40-step trainings and 3x3 samples each; about 80 s on 2 busy CPU cores).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sdstudio.cli import main
from sdstudio.core.config import load_config
from sdstudio.core.paths import data_dir
from sdstudio.demo import evaluation as demo_eval

pytestmark = pytest.mark.slow

# Written by looking at the ten pictures, in the sample set's wording.
HAND = [f"a pink heart on a {bg} background" for bg in ["white", "black", "gray"] * 3 + ["white"]]
PROMPTS = ["a pink heart on a white background", "a pink heart on a black background", "a pink heart on a gray background"]
SEEDS = [0, 1, 2]


def _train(folder: Path, out: Path) -> Path:
    from sdstudio.core.training.trainer import train

    cfg = load_config(data_dir() / "configs" / "demo-text2image.toml", {
        "train_data_dir": str(folder), "output_dir": str(out), "max_train_steps": 40, "train_batch_size": 4,
        "learning_rate": 6e-3, "checkpointing_steps": 40, "validation_steps": 0, "validation_loss": False})
    return train(cfg).checkpoints()[-1].path / "pytorch_lora_weights.safetensors"


def test_lora_on_demo_captions_learns_as_well_as_on_hand_captions(tmp_path: Path, one_torch_thread) -> None:
    from sdstudio.core.generation.generator import Generator, LoraSpec

    source = data_dir() / "dreambooth" / "pink-heart"
    hand, demo = tmp_path / "hand", tmp_path / "demo"
    for folder in (hand, demo):
        shutil.copytree(source, folder)
    (hand / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{i:02d}.png", "text": t}) + "\n"
                                                 for i, t in enumerate(HAND)))
    assert main(["caption", str(demo), "--model", "demo"]) == 0
    rates = {}
    generator = Generator("demo", device="cpu")
    for name, folder in (("hand", hand), ("demo", demo)):
        generator.set_loras([LoraSpec(_train(folder, tmp_path / f"run-{name}"))])
        images = [im for _, _, im in demo_eval.sample(generator.pipe, PROMPTS, SEEDS)]
        rates[name] = demo_eval.subject_rate(images)
        generator.forget_loras()
    print(f"pink hearts drawn after 40 steps: hand captions {rates['hand']:.0%}, demo captions {rates['demo']:.0%}")
    assert rates["hand"] >= 0.3  # the hand-captioned run learns the new subject (the base model draws none)
    assert rates["demo"] >= rates["hand"] - 0.1
