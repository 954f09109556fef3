"""Florence-2 (`Florence2ForConditionalGeneration`, native in transformers): short or detailed captions.

Florence-2 takes a task token, not free text: `<CAPTION>` by default, `<DETAILED_CAPTION>` or
`<MORE_DETAILED_CAPTION>` as --prompt for longer ones. Beam search as in its model card.
"""

from __future__ import annotations

from typing import Any

from sdstudio.core.captions.loading import HFCaptioner, Located, from_pretrained
from sdstudio.core.errors import SdstudioError

TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")


class FlorenceCaptioner(HFCaptioner):
    family = "florence"
    default_prompt = "<CAPTION>"

    def caption(self, images: list[Any], prompt: str | None, max_new_tokens: int) -> list[str]:
        task = (prompt or self.default_prompt or TASKS[0]).strip()
        if task not in TASKS:
            raise SdstudioError(f"--prompt {task!r}: Florence-2 takes a task token, one of {', '.join(TASKS)}")
        batch = self.inputs(self.processor(text=[task] * len(images), images=images, return_tensors="pt"))
        out = self.generate(batch, max_new_tokens, num_beams=3)
        return [t.strip() for t in self.processor.batch_decode(out, skip_special_tokens=True)]


def load(located: Located, device: Any, dtype: Any) -> FlorenceCaptioner:
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

    processor = Florence2Processor.from_pretrained(str(located.folder), local_files_only=True)
    model = from_pretrained(Florence2ForConditionalGeneration, located, dtype)
    return FlorenceCaptioner(located, model, processor, device, dtype)
