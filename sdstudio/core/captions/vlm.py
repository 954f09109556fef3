"""Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`): sentences that follow an instruction (--prompt).

Inputs are built from the model's own tokenizer (its chat template), its own image processor and
the model class; only the step that `Qwen2_5_VLProcessor` would add is written here: repeating
the image placeholder once per merged image patch. Why not the processor class: in this
transformers it requires a video processor, which exists only with torchvision, and sdstudio does
not depend on torchvision (captioning images never needs video).
"""

from __future__ import annotations

import json
from typing import Any

from sdstudio.core.captions.loading import HFCaptioner, Located, from_pretrained
from sdstudio.core.errors import ModelError

IMAGE_PAD = "<|image_pad|>"
MAX_SIDE = 896  # Qwen2.5-VL spends a token per 28x28 px: a 12-megapixel photo would cost ~15k tokens
DEFAULT_PROMPT = ("Describe this image in one sentence for a text-to-image training caption: "
                  "the subject, its colours, the background. No preamble.")


class VlmCaptioner(HFCaptioner):
    family = "vlm"
    default_prompt = DEFAULT_PROMPT

    def __init__(self, located: Located, model: Any, processor: Any, device: Any, dtype: Any, tokenizer: Any,
                 template: str) -> None:
        super().__init__(located, model, processor, device, dtype)
        self.tokenizer = tokenizer
        self.template = template

    def _prompt(self, instruction: str, patches: int) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
        text = self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False,
                                                  add_generation_prompt=True)
        if text.count(IMAGE_PAD) != 1:
            raise ModelError(f"{self.name}: its chat template does not place one {IMAGE_PAD} per image")
        return text.replace(IMAGE_PAD, IMAGE_PAD * patches)

    def caption(self, images: list[Any], prompt: str | None, max_new_tokens: int) -> list[str]:
        shrunk = []
        for image in images:
            image = image.copy()
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            shrunk.append(image)
        pixels = self.processor(images=shrunk, return_tensors="pt")
        merge = int(getattr(self.processor, "merge_size", 2)) ** 2
        texts = [self._prompt(prompt or DEFAULT_PROMPT, int(thw.prod()) // merge) for thw in pixels["image_grid_thw"]]
        batch = self.tokenizer(texts, padding=True, return_tensors="pt")
        batch.update(pixels)
        out = self.generate(self.inputs(batch), max_new_tokens)
        new = out[:, batch["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


def _chat_template(located: Located, tokenizer: Any) -> str:
    """The tokenizer's chat template, else the one a processor saved beside it (.jinja or .json)."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.chat_template)
    jinja, js = located.folder / "chat_template.jinja", located.folder / "chat_template.json"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    if js.is_file():
        return str(json.loads(js.read_text(encoding="utf-8"))["chat_template"])
    raise ModelError(f"{located.folder}: no chat template (tokenizer_config.json, chat_template.jinja or "
                     "chat_template.json); an instruction model needs one")


def load(located: Located, device: Any, dtype: Any) -> VlmCaptioner:
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    folder = str(located.folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, padding_side="left")
    images = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    model = from_pretrained(Qwen2_5_VLForConditionalGeneration, located, dtype)
    return VlmCaptioner(located, model, images, device, dtype, tokenizer, _chat_template(located, tokenizer))
