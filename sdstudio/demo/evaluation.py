"""Measure a model of the demo world with the picture judge: does it draw what the captions ask?

Shared by the demo model's benchmarks and the learning tests: generate every caption over
a few seeds (one generator per image, so a seed means the same picture in any batch) and
count how often the judge agrees with the caption.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdstudio.demo import judge
from sdstudio.core.paths import data_dir

# The demo model's recommended sampler settings (models/README.md; the demo configs' validation_*).
DEMO_STEPS = 20
DEMO_GUIDANCE = 4.0
SUBJECT = ("pink", "heart")


def training_captions(folder: Path | None = None) -> list[str]:
    """The distinct captions of the text-to-image sample set."""
    folder = folder or data_dir() / "shapes"
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return sorted({r["text"] for r in rows})


def holdout_captions(folder: Path | None = None) -> list[str]:
    """Captions of the colour x shape pairs that the sample set leaves out."""
    from sdstudio.demo.shapes import caption_for

    folder = folder or data_dir() / "shapes"
    spec = json.loads((folder.parent / f"{folder.name}-holdout.json").read_text(encoding="utf-8"))
    return [caption_for(p["colour"], p["shape"], bg) for p in spec["pairs"] for bg in spec["backgrounds"]]


def sample(pipe: Any, prompts: list[str], seeds: list[int], steps: int = DEMO_STEPS, guidance: float = DEMO_GUIDANCE,
           batch: int = 32, resolution: int | None = None) -> list[tuple[str, int, Any]]:
    """(prompt, seed, PIL image) for every prompt x seed."""
    import torch

    size = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    jobs = [(p, s) for p in prompts for s in seeds]
    out: list[tuple[str, int, Any]] = []
    for i in range(0, len(jobs), batch):
        chunk = jobs[i:i + batch]
        gens = [torch.Generator().manual_seed(s) for _, s in chunk]
        with torch.no_grad():
            images = pipe([p for p, _ in chunk], height=size, width=size, num_inference_steps=steps,
                          guidance_scale=guidance, generator=gens).images
        out.extend((p, s, im) for (p, s), im in zip(chunk, images))
    return out


def score(samples: list[tuple[str, int, Any]]) -> dict[str, float]:
    """Checker accuracy (colour, shape, background, all) of samples against their prompts."""
    return judge.accuracy([im for _, _, im in samples], [p for p, _, _ in samples])


def subject_rate(images: list[Any], subject: tuple[str, str] = SUBJECT) -> float:
    """Share of images that show the DreamBooth subject (its colour and its shape)."""
    hits = sum(judge.read_image(im).matches(colour=subject[0], shape=subject[1]) for im in images)
    return hits / max(1, len(images))



def ordinary_fidelity(samples: list[tuple[str, int, Any]]) -> float:
    """Share of samples showing their caption's colour and shape (backgrounds aside)."""
    ok = [judge.check_caption(im, p) for p, _, im in samples]
    return sum(r["colour"] and r["shape"] for r in ok) / max(1, len(ok))


def checkpoint_figures(generator: Any, lora: Path | None, subject_prompt: str, captions: list[str],
                       seeds: list[int]) -> dict[str, float]:
    """Judge one LoRA checkpoint (None: the base model) on fresh seeds: subject rate on the subject
    prompt, ordinary-caption fidelity on `captions`."""
    from sdstudio.core.generation.generator import LoraSpec

    generator.set_loras([LoraSpec(lora)] if lora is not None else [])
    try:
        subject = subject_rate([im for _, _, im in sample(generator.pipe, [subject_prompt], seeds)])
        ordinary = ordinary_fidelity(sample(generator.pipe, captions, seeds))
    finally:
        generator.forget_loras()
    return {"subject": subject, "ordinary": ordinary}


# The demo DreamBooth run the recommendation is judged on: the shipped config, a checkpoint every
# 50 steps, and two ordinary prompts sampled beside the instance prompt, 8 seeds each, so that both
# subject and prompt fidelity are seen on more than a handful of pictures.
WATCH_PROMPTS = ["a sks shape", "a red circle on a white background", "a blue star on a gray background"]


def recommend_run_overrides(out: Path) -> dict[str, Any]:
    return {"output_dir": str(out), "checkpointing_steps": 50, "validation_steps": 50,
            "validation_prompts": WATCH_PROMPTS, "num_validation_images": 8, "scorers": ["demo"]}


def fresh_captions(count: int) -> list[str]:
    """Training captions the watch prompts do not use, spread over colours and shapes."""
    pool = [c for c in training_captions() if c not in WATCH_PROMPTS]
    return pool[::max(1, len(pool) // count)][:count]
