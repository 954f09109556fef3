"""The demo world's scorer: the picture judge reads each sample, so scores mean something on a CPU.

- subject: share of the subject prompt's samples that show the subject, where the subject is
  what the judge reads in most instance images (the pink heart of data/dreambooth);
- prompt: share of the ordinary prompts' samples that show their caption's colour and shape;
- nearest: pixel similarity (1 - mean absolute difference at 32x32) of each subject sample
  to its nearest training image; 1 would be a copy.
Registered by name in sdstudio.core.training.scorers ("demo").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sdstudio.core.training.scorers import Scorer, StepSamples
from sdstudio.demo import judge

THUMB = 32


def _pixels(image: Any) -> Any:
    import numpy as np

    return np.asarray(image.convert("RGB").resize((THUMB, THUMB)), dtype=np.float32) / 255.0


class DemoJudgeScorer(Scorer):
    name = "demo"

    def __init__(self) -> None:
        self._ref_key: tuple[int, ...] | None = None
        self._subject: tuple[str, str] | None = None
        self._ref_pixels: Any = None

    def _references(self, references: list[Any]) -> None:
        import numpy as np

        key = tuple(id(r) for r in references)
        if key == self._ref_key:
            return
        self._ref_key = key
        readings = Counter((r.colour, r.shape) for r in map(judge.read_image, references))
        (colour, shape), _ = readings.most_common(1)[0]
        self._subject = (colour, shape) if colour != "none" and shape not in ("none", "unknown") else None
        self._ref_pixels = np.stack([_pixels(r) for r in references])

    def values(self, samples: StepSamples, references: list[Any]) -> dict[str, list[float]]:
        import numpy as np

        out: dict[str, list[float]] = {}
        if samples.ordinary:
            hits = [judge.check_caption(im, p) for p, im in samples.ordinary]
            out["prompt"] = [float(h["colour"] and h["shape"]) for h in hits]
        if not references:
            return out
        self._references(references)
        if samples.subject and self._subject is not None:
            colour, shape = self._subject
            out["subject"] = [float(judge.read_image(im).matches(colour=colour, shape=shape))
                              for _, im in samples.subject]
        pool = samples.subject or samples.ordinary
        if pool:
            out["nearest"] = [float(1.0 - np.abs(self._ref_pixels - _pixels(im)).mean(axis=(1, 2, 3)).min())
                              for _, im in pool]
        return out
