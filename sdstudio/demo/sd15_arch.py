"""Stable Diffusion 1.5's architecture as component configs (numbers only, no weights).

The project's own statement of the SD 1.5 shapes: benchmarks build random-weight models of the
real size from these, and tests build meta-device models (no memory) to check key layouts, so
both run anywhere without a download or any folder outside the repository. Fields left out take
diffusers' / transformers' defaults, which are SD 1.5's.
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
    """Component -> config dict (copies: callers may change them)."""
    return {"unet": dict(UNET), "vae": dict(VAE), "text_encoder": dict(TEXT)}


def write_config_folder(out_dir: Path) -> Path:
    """A diffusers-style folder holding only `unet/`, `vae/`, `text_encoder/` config.json (no weights):
    enough for readers of a folder's configs such as `LdmLayout.from_folder`."""
    import json

    for name, cfg in configs().items():
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        (out_dir / name / "config.json").write_text(json.dumps(cfg, indent=2))
    return out_dir


def meta_models() -> dict[str, Any]:
    """Component -> SD 1.5-size model on the meta device (real shapes, no memory, no weights)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        return {"unet": UNet2DConditionModel(**UNET), "vae": AutoencoderKL(**VAE),
                "text_encoder": CLIPTextModel(CLIPTextConfig(**TEXT))}


def ldm_layout() -> Any:
    """The A1111/LDM single-file layout of SD 1.5, from these numbers."""
    from sdstudio.core.io.ldm_layout import LdmLayout

    return LdmLayout(dict(UNET), dict(VAE), "sd1", int(TEXT["num_hidden_layers"]))


def ldm_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of an SD 1.5 single-file (A1111) checkpoint -> its shape (meta models: no memory)."""
    from sdstudio.demo.ldm_files import diffusers_to_ldm

    comps = {name: model.state_dict() for name, model in meta_models().items()}
    return {k: tuple(v.shape) for k, v in diffusers_to_ldm(comps, ldm_layout()).items()}
