"""The shipped demo model loads like an SD 1.5 folder and draws what a caption asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdstudio.demo import judge
from sdstudio.demo import evaluation as demo_eval
from sdstudio.core.models import load_pipeline, resolve_base_model
from sdstudio.core.paths import data_dir, demo_model_dir


@pytest.fixture(scope="module")
def demo_pipe():
    import torch

    torch.manual_seed(0)
    return load_pipeline("demo")


def test_demo_is_a_diffusers_sd1_folder_of_safetensors_under_30_mb() -> None:
    base = resolve_base_model("demo")
    assert (base.kind, base.family) == ("demo", "sd1")
    folder = demo_model_dir()
    for part in ("unet", "vae", "text_encoder"):
        assert list((folder / part).glob("*.safetensors")), f"{part} weights are not safetensors"
        assert not list((folder / part).glob("*.bin"))
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total <= 30 * 2**20


def test_tokenizer_knows_every_caption_word_as_one_token(demo_pipe) -> None:
    tok = demo_pipe.tokenizer
    words = {w for c in demo_eval.training_captions() for w in c.split()}
    for word in sorted(words):
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    assert tok("a sks shape", add_special_tokens=False).input_ids  # any text encodes (byte fallback)


@pytest.mark.parametrize("caption", ["a red circle on a white background", "a green triangle on a black background"])
def test_caption_is_drawn(demo_pipe, caption: str) -> None:
    samples = demo_eval.sample(demo_pipe, [caption], seeds=[0, 1, 2, 3])
    ok = [judge.check_caption(im, caption) for _, _, im in samples]
    assert sum(r["colour"] and r["shape"] for r in ok) >= 3, [judge.read_image(im) for _, _, im in samples]


def test_held_out_pairs_are_drawn(demo_pipe) -> None:
    """Colour x shape pairs absent from the training set still come out right (generalisation)."""
    captions = demo_eval.holdout_captions()
    assert not set(captions) & set(demo_eval.training_captions())
    figures = demo_eval.score(demo_eval.sample(demo_pipe, captions, seeds=[0, 1]))
    assert figures["colour"] >= 0.9 and figures["shape"] >= 0.7, figures


def test_dreambooth_subject_survives_the_vae(demo_pipe) -> None:
    """The VAE can draw the DreamBooth subject, so a LoRA can learn it."""
    import numpy as np
    import torch
    from PIL import Image

    files = sorted((data_dir() / "dreambooth" / "pink-heart").glob("*.png"))
    assert 5 <= len(files) <= 15
    images = [Image.open(f).convert("RGB") for f in files]
    x = torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32) / 127.5 - 1 for im in images])).permute(0, 3, 1, 2)
    with torch.no_grad():
        rec = demo_pipe.vae.decode(demo_pipe.vae.encode(x).latent_dist.mode()).sample
    arr = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    readings = [judge.read_image(Image.fromarray(a)) for a in arr]
    assert sum(r.matches("pink", "heart") for r in readings) >= 0.9 * len(files), readings
    assert demo_eval.subject_rate(images) == 1.0


def test_base_model_does_not_draw_the_subject(demo_pipe) -> None:
    samples = demo_eval.sample(demo_pipe, ["a sks shape"], seeds=list(range(8)))
    assert demo_eval.subject_rate([im for _, _, im in samples]) <= 0.125


def _readme() -> Path:
    return demo_model_dir().parent / "README.md"


def test_readme_states_the_sampler_settings() -> None:
    text = _readme().read_text(encoding="utf-8")
    assert f"{demo_eval.DEMO_STEPS} steps" in text and f"guidance {demo_eval.DEMO_GUIDANCE}" in text
