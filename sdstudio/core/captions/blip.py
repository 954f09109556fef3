"""BLIP (`BlipForConditionalGeneration`): short captions, no instruction.

BLIP continues a text prefix; none is given, so it describes the picture from scratch (its
"a picture of" style prefixes end up in the caption). Beam search as in BLIP's model card.
"""

from __future__ import annotations

from typing import Any

from sdstudio.core.captions.loading import HFCaptioner, Located, from_pretrained


class BlipCaptioner(HFCaptioner):
    family = "blip"

    def caption(self, images: list[Any], prompt: str | None, max_new_tokens: int) -> list[str]:
        batch = self.inputs(self.processor(images=images, return_tensors="pt"))
        out = self.generate(batch, max_new_tokens, num_beams=3)
        return [t.strip() for t in self.processor.batch_decode(out, skip_special_tokens=True)]


def load(located: Located, device: Any, dtype: Any) -> BlipCaptioner:
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(str(located.folder), local_files_only=True)
    return BlipCaptioner(located, from_pretrained(BlipForConditionalGeneration, located, dtype), processor, device, dtype)
