"""The demo world's captioner (`--model demo`): it reads a shapes picture and writes the caption the
sample data would have, e.g. "a red star on a white background".

It is the picture judge (`sdstudio.demo.judge`) turned around: the judge finds the background,
the object's colour and its shape, and `shapes.caption_for` words them as the sample set does.
So the whole loop (strip captions, caption, review, train) runs on a CPU with no download.
"""

from __future__ import annotations

from typing import Any

from sdstudio.demo import judge
from sdstudio.demo.shapes import caption_for

DEMO_NAME = "demo"


class DemoCaptioner:
    name = DEMO_NAME
    revision = None
    family = "demo"
    default_prompt = None

    def caption(self, images: list[Any], prompt: str | None, max_new_tokens: int) -> list[str]:
        out = []
        for image in images:
            seen = judge.read_image(image)
            if seen.colour == "none" or seen.shape in ("none", "unknown"):
                out.append(f"a {seen.background} background")  # nothing the demo world knows: say what is certain
            else:
                out.append(caption_for(seen.colour, seen.shape, seen.background))
        return out


def open_captioner(name: str, allow_download: bool = False, revision: str | None = None,
                   device: str | None = None) -> Any:
    """`demo`, or a transformers captioner (BLIP, Florence-2, Qwen2.5-VL) by folder or hub id."""
    if name.strip() == DEMO_NAME:
        return DemoCaptioner()
    from sdstudio.core.captions import loading

    return loading.load(name, allow_download=allow_download, revision=revision, device=device)
