"""What training SDXL adds to SD 1.x/2.x: two text encoders, pooled text, size/crop time ids.

SDXL conditions its UNet on
- `encoder_hidden_states`: the penultimate hidden states of CLIP ViT-L (`text_encoder`) and of
  OpenCLIP ViT-bigG (`text_encoder_2`), side by side;
- `added_cond_kwargs["text_embeds"]`: bigG's pooled, projected embedding;
- `added_cond_kwargs["time_ids"]`: (original height, width, crop top, left, target height, width)
  of each training image, as it was trained (the crop is where the picture was cut from after
  resizing, mirrored with a flip; the target is the bucket or square the model sees).
This follows the diffusers SDXL LoRA example scripts (`encode_prompt`, `compute_time_ids`).

Precision: the VAE always runs in fp32 here. SDXL's original VAE overflows in fp16 (NaN
latents); the "fp16-fix" VAE does not, but latents are computed once and cached, so fp32 costs
little and is right for both. The UNet and both text encoders take `mixed_precision`; the LoRA
weights train in fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.training.examples import Example, ExampleSource


class SdxlSource(ExampleSource):
    """Latents as for SD (buckets included); text through both encoders; time ids per image."""

    def __init__(self, cfg: TrainConfig, vae: Any, text_encoders: tuple[Any, Any], tokenizers: tuple[Any, Any],
                 device: Any, weight_dtype: Any, all_square: bool = False) -> None:
        super().__init__(cfg, vae, text_encoders[0], tokenizers[0], device, weight_dtype, all_square)
        self.text_encoder_2 = text_encoders[1]
        self.tokenizer_2 = tokenizers[1]

    def _encode_pair(self, captions: list[str]) -> tuple[Any, Any]:
        """(hidden states of both encoders concatenated, pooled embedding of the second)."""
        import torch

        hidden = []
        pooled = None
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids.to(self.device)
            out = encoder(ids, output_hidden_states=True, return_dict=True)
            hidden.append(out.hidden_states[-2])
            pooled = out.text_embeds if hasattr(out, "text_embeds") else out[0]
        return torch.cat(hidden, dim=-1), pooled

    def _encode_text(self, captions: list[str]) -> Any:
        return self._encode_pair(captions)[0]

    def precompute(self, examples: list[Example], check: Callable[[], None] = lambda: None) -> None:
        cache_text, self.cache_text = self.cache_text, False
        try:
            super().precompute(examples, check)  # latents
        finally:
            self.cache_text = cache_text
        if cache_text:
            for caption in sorted({ex.caption for ex in examples} - set(self._text_cache)):
                check()
                hidden, pooled = self._encode_pair([caption])
                self._text_cache[caption] = (hidden[0].cpu(), pooled[0].cpu())

    def unet_inputs(self, examples: list[Example], conds: list[tuple[int, ...]]) -> dict[str, Any]:
        import torch

        if self.cache_text:
            hidden = torch.stack([self._text_cache[ex.caption][0] for ex in examples])
            pooled = torch.stack([self._text_cache[ex.caption][1] for ex in examples])
        else:
            hidden, pooled = self._encode_pair([ex.caption for ex in examples])
        dtype = self.weight_dtype
        time_ids = torch.tensor([list(c) for c in conds], dtype=dtype, device=self.device)
        return {"encoder_hidden_states": hidden.to(self.device, dtype=dtype),
                "added_cond_kwargs": {"text_embeds": pooled.to(self.device, dtype=dtype), "time_ids": time_ids}}


def text_encoder_targets(text_encoder: Any, pooled: bool) -> list[str]:
    """The attention projections to give LoRA layers in one SDXL text encoder: those whose output
    reaches the UNet. The UNet reads both encoders' penultimate hidden states, so CLIP-L's last
    layer is computed but unused; bigG's pooled embedding comes from its last layer, so there every
    layer counts (`pooled`).

    Why not DDP's `find_unused_parameters` (which diffusers' SDXL LoRA script sets): it would keep
    LoRA weights that never learn (B stays zero) in every checkpoint and export, where A1111,
    ComfyUI and diffusers read CLIP-L at the same penultimate layer; and it makes DDP search the
    graph for unused parameters at every step, which would also hide a real fault such as prompts
    that bypass the prepared encoder.
    """
    from sdstudio.core.training.checkpoint import TEXT_ENCODER_TARGETS

    layers = text_encoder.config.num_hidden_layers if pooled else text_encoder.config.num_hidden_layers - 1
    return [f"encoder.layers.{i}.self_attn.{proj}" for i in range(layers) for proj in TEXT_ENCODER_TARGETS]


def make_pipeline(base_pipe: Any, unet: Any, text_encoder: Any, text_encoder_2: Any, vae: Any) -> Any:
    """An SDXL pipeline sharing the training modules (no copies), with the model's own sampler."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=base_pipe.tokenizer, tokenizer_2=base_pipe.tokenizer_2, unet=unet,
                                     scheduler=base_pipe.scheduler, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
