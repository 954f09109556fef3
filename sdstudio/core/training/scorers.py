"""Image scorers: how well a checkpoint's validation samples follow their prompts and show the subject.

A scorer reads one step's samples (prompt, image) and the training images, and returns
one number per sample by role (the step's score is their mean; `intervals.py` bootstraps its
interval over them):

- `prompt`: prompt fidelity on the ordinary prompts (CLIP-T: image-text cosine; the demo
  judge: share of pictures showing the caption's colour and shape);
- `subject`: subject fidelity on the instance prompt's samples, DreamBooth only (CLIP-I or
  DINO: mean cosine to the instance images; the demo judge: share showing the subject);
- `nearest`: a memorization indicator, the similarity of each subject sample to its nearest
  training image (1 means a copy), averaged.

Scorers are found by name (`config.SCORERS`; `_CLASSES` holds module:class strings) and imported only when used, so
the engine does not import the demo world nor transformers until a run asks for them.
CLIP and DINO load from a local folder or the Hugging Face cache, never from the network.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from sdstudio.core.config import SCORERS
from sdstudio.core.errors import SdstudioError

ROLES = ("subject", "prompt", "nearest")
# Where each scorer named in config.SCORERS (the one list of names) lives.
_CLASSES = {
    "demo": "sdstudio.demo.scorer:DemoJudgeScorer",
    "clip": "sdstudio.core.training.scorers:ClipScorer",
    "dino": "sdstudio.core.training.scorers:DinoScorer",
}
# Column titles for each scorer's roles (the table, the CLI, the TUI).
LABELS = {
    "demo_subject": "subject", "demo_prompt": "prompt", "demo_nearest": "nearest",
    "clip_subject": "CLIP-I", "clip_prompt": "CLIP-T", "clip_nearest": "CLIP-nn",
    "dino_subject": "DINO", "dino_nearest": "DINO-nn",
}
_STOP_WORDS = {"a", "an", "the", "of", "photo", "picture", "image", "in", "on", "with"}


@dataclass(frozen=True)
class StepSamples:
    """One step's validation samples split by what they measure."""

    subject: list[tuple[str, Any]]  # (prompt, PIL image) of prompts naming the DreamBooth subject
    ordinary: list[tuple[str, Any]]  # every other prompt


def is_subject_prompt(prompt: str, instance_prompt: str | None) -> bool:
    """A prompt names the subject when it holds every word of the instance prompt that is not
    filler ("a sks dog on the beach" does for "a photo of sks dog"; "a dog" does not)."""
    if not instance_prompt:
        return False
    words = set(prompt.lower().replace(",", " ").split())
    key = [w for w in instance_prompt.lower().replace(",", " ").split() if w not in _STOP_WORDS]
    return bool(key) and all(w in words for w in key)


def split_samples(samples: list[tuple[str, Any]], instance_prompt: str | None) -> StepSamples:
    subject = [s for s in samples if is_subject_prompt(s[0], instance_prompt)]
    ordinary = [s for s in samples if not is_subject_prompt(s[0], instance_prompt)]
    return StepSamples(subject, ordinary)


class Scorer:
    """Base: subclasses fill `name` and `values`; a role they cannot measure is left out."""

    name = ""

    def values(self, samples: StepSamples, references: list[Any]) -> dict[str, list[float]]:
        """Per role, one number per sample (the samples an interval is drawn from)."""
        raise NotImplementedError

    def score(self, samples: StepSamples, references: list[Any]) -> dict[str, float]:
        """Per role, the mean over the samples."""
        return {k: sum(v) / len(v) for k, v in self.values(samples, references).items() if v}


class EmbeddingScorer(Scorer):
    """Scores from normalised image (and text) embeddings: cosines to prompts and references."""

    def embed_images(self, images: list[Any]) -> Any:
        raise NotImplementedError

    def embed_texts(self, texts: list[str]) -> Any | None:
        return None  # an image-only model (DINO) has no prompt fidelity

    def __init__(self) -> None:
        self._ref_key: tuple[int, ...] | None = None
        self._ref_emb: Any = None

    def _references(self, references: list[Any]) -> Any:
        key = tuple(id(r) for r in references)
        if key != self._ref_key:  # embedded once per run, not per step
            self._ref_key, self._ref_emb = key, self.embed_images(references)
        return self._ref_emb

    def values(self, samples: StepSamples, references: list[Any]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        if samples.ordinary:
            prompts = sorted({p for p, _ in samples.ordinary})  # each prompt embedded once
            texts = self.embed_texts(prompts)
            if texts is not None:
                images = self.embed_images([im for _, im in samples.ordinary])
                rows = texts[[prompts.index(p) for p, _ in samples.ordinary]]
                out["prompt"] = (images * rows).sum(-1).tolist()
        pool = samples.subject or samples.ordinary  # text-to-image: every sample against the training images
        if pool and references:
            sims = self.embed_images([im for _, im in pool]) @ self._references(references).T  # (samples, refs)
            if samples.subject:
                out["subject"] = sims.mean(dim=1).tolist()
            out["nearest"] = sims.max(dim=1).values.tolist()
        return out


def _features(out: Any) -> Any:
    """CLIP's projected features: transformers 4.x returns the tensor, 5.x an output whose
    pooler_output holds it (pyproject allows both)."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _load(kind: str, model_class: str, processor_class: str, name: str, field_name: str) -> tuple[Any, Any]:
    import transformers

    try:
        model = getattr(transformers, model_class).from_pretrained(name, local_files_only=True)
        processor = getattr(transformers, processor_class).from_pretrained(name, local_files_only=True)
    except OSError as exc:
        raise SdstudioError(f"{field_name} = {name!r}: the {kind} model is neither a local folder nor in the Hugging Face "
                            f"cache ({exc.__class__.__name__}). Set {field_name} to a local folder, or download it once "
                            "with `huggingface-cli download` on a machine with network access") from None
    model.eval()
    return model, processor


class ClipScorer(EmbeddingScorer):
    """CLIP-T (image-text) and CLIP-I (image-image) cosines, from `clip_model`."""

    name = "clip"

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model, self.processor = _load("CLIP", "CLIPModel", "CLIPProcessor", model, "clip_model")

    def embed_images(self, images: list[Any]) -> Any:
        import torch

        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            emb = _features(self.model.get_image_features(pixel_values=pixels))
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def embed_texts(self, texts: list[str]) -> Any:
        import torch

        tok = self.processor(text=texts, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            emb = _features(self.model.get_text_features(input_ids=tok["input_ids"],
                                                         attention_mask=tok["attention_mask"]))
        return torch.nn.functional.normalize(emb.float(), dim=-1)


class DinoScorer(EmbeddingScorer):
    """DINO image-image cosines of the class token, from `dino_model`.

    The class token is the last hidden state's first position (after the final layer norm), not
    `pooler_output`: a DINO v1 checkpoint (a ViTModel) has no pooler weights, so transformers would
    initialise one at random at every load; DINOv2's pooler_output is this same token."""

    name = "dino"

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model, self.processor = _load("DINO", "AutoModel", "AutoImageProcessor", model, "dino_model")

    def embed_images(self, images: list[Any]) -> Any:
        import torch

        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            emb = self.model(pixel_values=pixels).last_hidden_state[:, 0]
        return torch.nn.functional.normalize(emb.float(), dim=-1)


def make_scorer(name: str, clip_model: str = "", dino_model: str = "") -> Scorer:
    """The scorer called `name`, with its model loaded."""
    if name not in SCORERS:
        raise SdstudioError(f"unknown scorer {name!r}: choose from {', '.join(SCORERS)}")
    module, _, attr = _CLASSES[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if name == "clip":
        return cls(clip_model)
    if name == "dino":
        return cls(dino_model)
    return cls()
