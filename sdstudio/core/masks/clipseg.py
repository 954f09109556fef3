"""CLIPSeg as a masker: transformers' own CLIPSegProcessor and CLIPSegForImageSegmentation.

CLIPSeg (the model OneTrainer offers for its masks) segments whatever a text prompt names,
is small (150 M parameters) and native in transformers, so no remote code is run. A model is a
local folder or a hub id read from the local cache unless downloads are allowed (e.g.
`CIDAS/clipseg-rd64-refined`); only safetensors weights are loaded. The mask it returns is the
model's probability (0-255) resized to the image; `dataset mask` thresholds, expands and blurs it.
"""

from __future__ import annotations

import json
from typing import Any

from sdstudio.core.errors import ModelError

SUGGESTED = "CIDAS/clipseg-rd64-refined"


def _missing(name: str, why: str) -> ModelError:
    return ModelError(f"CLIPSeg model '{name}' not found ({why}). Pass a local CLIPSeg folder, or allow the "
                      f"download once: `sdstudio dataset mask DIR --model clipseg:{name} --allow-download` "
                      f"(e.g. clipseg:{SUGGESTED}).")


class ClipSegMasker:
    """One loaded CLIPSeg model; `mask(image, prompt)` gives a soft "L" mask of the image's size."""

    def __init__(self, source: str, allow_download: bool = False, device: str | None = None,
                 revision: str | None = None) -> None:
        from sdstudio.core.captions.loading import device_and_dtype, model_folder

        folder, self.revision = model_folder(source, allow_download, revision, _missing)
        config = folder / "config.json"
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type") if config.is_file() else None
        except (json.JSONDecodeError, AttributeError, OSError):
            model_type = None
        if model_type != "clipseg":
            found = f"its config.json says model_type {model_type!r}" if model_type else "it has no readable config.json"
            raise ModelError(f"{folder}: not a CLIPSeg model ({found}); give a CLIPSeg folder or hub id, "
                             f"e.g. clipseg:{SUGGESTED}")
        if not any(folder.glob("*.safetensors")):
            raise ModelError(f"{folder}: no .safetensors weights; sdstudio does not load pickled checkpoints (.bin). "
                             "Pick a revision that has model.safetensors (--revision, e.g. a hub 'refs/pr/N' that adds it)")
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        self.device, dtype = device_and_dtype(device)
        try:
            self.processor = CLIPSegProcessor.from_pretrained(str(folder), local_files_only=True)
            model = CLIPSegForImageSegmentation.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                                trust_remote_code=False, dtype=dtype)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{folder}: cannot load CLIPSeg from it ({first})") from None
        self.model = model.to(self.device).eval()
        self.dtype = dtype
        self.name = f"clipseg:{source}"

    def mask(self, image: Any, prompt: str) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        rgb = image.convert("RGB")
        batch = self.processor(text=[prompt], images=[rgb], return_tensors="pt", padding=True)
        inputs = {k: (v.to(self.device, dtype=self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in batch.items()}
        with torch.inference_mode():
            logits = self.model(**inputs).logits.float()
        prob = torch.sigmoid(logits.reshape(-1, *logits.shape[-2:])[0])[None, None]
        full = torch.nn.functional.interpolate(prob, size=(rgb.height, rgb.width), mode="bilinear", align_corners=False)
        arr = (full[0, 0].clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L")
