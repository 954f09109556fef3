"""Stable Diffusion 1.5's architecture as component configs (numbers only, no weights).

The benchmarks build random-weight models of the real shapes from these, so they run
anywhere without a download (the GPU machine does not see ../shared/sd15-config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32,
}
VAE = {
    "sample_size": 512, "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512], "norm_num_groups": 32,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
TEXT = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
        "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768, "vocab_size": 49408}


def build_sd15(out_dir: Path, seed: int = 0, words: list[str] | None = None) -> Path:
    """Save a random-weight SD 1.5-shaped StableDiffusionPipeline folder (fp16 weights, ~2 GB)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from sdstudio.demo.tiny import write_clip_tokenizer

    torch.manual_seed(seed)
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(out_dir / "tokenizer", words or ["a", "photo", "of", "sks", "dog"]))
    text = CLIPTextModel(CLIPTextConfig(**TEXT, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                        pad_token_id=tok.pad_token_id))
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**VAE), text_encoder=text, tokenizer=tok, unet=UNet2DConditionModel(**UNET),
        scheduler=DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                num_train_timesteps=1000, steps_offset=1, clip_sample=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def configs() -> dict[str, dict[str, Any]]:
    return {"unet": UNET, "vae": VAE, "text_encoder": TEXT}
