"""Small Stable-Diffusion-architecture models built from code.

Used for tests (real diffusers/transformers classes with tiny configs, random weights)
and as the starting point of the demo model. The CLIP tokenizer vocabulary is written
here: every byte is a token (so any text encodes), and each known word gets BPE merges
that assemble it into one token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table (a published algorithm)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_clip_tokenizer(out_dir: str | os.PathLike[str], words: Iterable[str], max_length: int = 77) -> Path:
    """Write vocab.json, merges.txt and configs of a CLIPTokenizer that knows `words`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(tok, len(vocab))
    merges: list[str] = []
    seen_merges: set[str] = set()
    for word in sorted({w.lower() for w in words if w}):
        if any(c not in chars for c in word) or len(word) < 2:
            continue
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        # merge left to right: ((w o) r) d</w>
        current = symbols[0]
        for nxt in symbols[1:]:
            rule = f"{current} {nxt}"
            current = current + nxt
            if rule not in seen_merges:
                seen_merges.add(rule)
                merges.append(rule)
            vocab.setdefault(current, len(vocab))
    vocab.setdefault(BOS, len(vocab))
    vocab.setdefault(EOS, len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(
        json.dumps({**special, "model_max_length": max_length, "tokenizer_class": "CLIPTokenizer",
                    "do_lower_case": True, "add_prefix_space": False}, indent=2),
        encoding="utf-8",
    )
    return out


def tiny_unet_config(sample_size: int = 8, cross_attention_dim: int = 32) -> dict[str, Any]:
    return {
        "sample_size": sample_size,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 1,
        "block_out_channels": [32, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    }


def tiny_vae_config(sample_size: int = 32) -> dict[str, Any]:
    return {
        "sample_size": sample_size,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": [16, 32],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
        "layers_per_block": 1,
        "norm_num_groups": 8,
    }


def build_tiny_pipeline(out_dir: str | os.PathLike[str], seed: int = 0, words: Iterable[str] = (),
                        resolution: int = 32) -> Path:
    """Save a random-weight SD pipeline (VAE 2x downsampling) as a diffusers folder."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(out_dir)
    torch.manual_seed(seed)
    tok_dir = write_clip_tokenizer(out / "tokenizer", list(words) + "a photo of sks cat dog red blue circle square".split())
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_config)
    vae = AutoencoderKL(**tiny_vae_config(resolution))
    unet = UNet2DConditionModel(**tiny_unet_config(resolution // 2, 32))
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                              steps_offset=1, clip_sample=False)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def tiny_sdxl_unet_config(sample_size: int = 16, text_dims: tuple[int, int] = (32, 48), pooled_dim: int = 32,
                          time_dim: int = 8) -> dict[str, Any]:
    """SDXL's UNet shape in miniature: no attention at the top level, two transformer layers
    deeper down (SDXL's transformer_layers_per_block [1, 2, 10]), linear projections, and the
    `text_time` added conditioning (pooled text + six size/crop numbers)."""
    return {
        "sample_size": sample_size,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 1,
        "block_out_channels": [32, 64],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "transformer_layers_per_block": [1, 2],
        "cross_attention_dim": sum(text_dims),  # both encoders' hidden states side by side
        "attention_head_dim": [4, 8],
        "use_linear_projection": True,
        "norm_num_groups": 8,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": time_dim,
        "projection_class_embeddings_input_dim": pooled_dim + 6 * time_dim,
    }


def build_tiny_sdxl_pipeline(out_dir: str | os.PathLike[str], seed: int = 0, words: Iterable[str] = (),
                             resolution: int = 32) -> Path:
    """Save a random-weight SDXL-architecture pipeline (two CLIP text encoders, the second with a
    projection; VAE 2x downsampling) as a diffusers folder. The encoders differ in width (32 and
    48), as CLIP-L and OpenCLIP bigG do (768, 1280): readers tell them apart by it."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    out = Path(out_dir)
    torch.manual_seed(seed)
    vocab = list(words) + "a photo of sks cat dog red blue circle square box wide tall".split()
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(out / "tokenizer", vocab))
    tokenizer_2 = CLIPTokenizer.from_pretrained(write_clip_tokenizer(out / "tokenizer_2", vocab))

    def text_config(act: str, width: int) -> Any:
        return CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, projection_dim=32, hidden_act=act,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )

    text_encoder = CLIPTextModel(text_config("quick_gelu", 32))  # CLIP ViT-L
    text_encoder_2 = CLIPTextModelWithProjection(text_config("gelu", 48))  # OpenCLIP ViT-bigG
    vae = AutoencoderKL(**{**tiny_vae_config(resolution), "scaling_factor": 0.13025, "force_upcast": True})
    unet = UNet2DConditionModel(**tiny_sdxl_unet_config(resolution // 2))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                     add_watermarker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    return out
