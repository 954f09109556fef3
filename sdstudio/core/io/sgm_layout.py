"""SDXL weights in diffusers folders vs the SGM single-file layout (what A1111 and ComfyUI load).

An SDXL single file (Stability's `sgm` code) holds one flat state dict:

    model.diffusion_model.*                  the UNet, in the LDM layout of SD 1.x/2.x, with a
                                             transformer depth per block (`transformer_blocks.N`)
                                             and `label_emb.0.0` / `label_emb.0.2`: diffusers'
                                             `add_embedding.linear_1/2` (pooled text + size/crop ids)
    first_stage_model.*                      the VAE, as in SD 1.x/2.x
    conditioner.embedders.0.transformer.*    CLIP ViT-L in Hugging Face names (`text_model.…`)
    conditioner.embedders.1.model.*          OpenCLIP ViT-bigG in OpenCLIP names, as SD 2's text
                                             encoder: fused `attn.in_proj_*` (q, k, v), bare
                                             `positional_embedding`, and `text_projection`, a bare
                                             (hidden, projection) matrix: diffusers'
                                             `text_projection.weight` transposed

`SgmLayout` extends `LdmLayout` with the second text encoder (`text_encoder_2`) and those
SDXL-only names; the UNet and VAE maps are the shared SD ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdstudio.core.errors import ModelError
from sdstudio.core.io.ldm_layout import (read_component_configs, SD1_TEXT_PREFIX, SD2_TEXT_PREFIX, UNET_PREFIX, LdmLayout, Part,
                                         _count_indices, _infer_unet_config, _infer_vae_config,
                                         canonical_text_key, text_encoder_module_map, unet_module_map,
                                         vae_module_map)

TE1_PREFIX = "conditioner.embedders.0.transformer."
TE2_PREFIX = "conditioner.embedders.1.model."
SDXL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
_ADDED_COND = ("addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim",
               "addition_embed_type_num_heads")
_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
# SDXL base 1.0's UNet block layout (what LoRAs named in the SGM layout refer to).
SDXL_BASE_UNET = {
    "block_out_channels": [320, 640, 1280], "layers_per_block": 2, "transformer_layers_per_block": [1, 2, 10],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "addition_embed_type": "text_time",
}


def sdxl_unet_module_map(unet_config: Mapping[str, Any]) -> dict[str, str]:
    """The SD UNet map plus SDXL's added-conditioning MLP (`label_emb.0`)."""
    if unet_config.get("addition_embed_type") != "text_time":
        raise ModelError("UNet config: not an SDXL UNet (expected addition_embed_type 'text_time')")
    m = unet_module_map({k: v for k, v in unet_config.items() if k not in _ADDED_COND})
    m["add_embedding.linear_1"] = UNET_PREFIX + "label_emb.0.0"
    m["add_embedding.linear_2"] = UNET_PREFIX + "label_emb.0.2"
    return m


def _reprefix(mapping: Mapping[str, str], old: str, new: str) -> dict[str, str]:
    return {ours: new + theirs[len(old):] for ours, theirs in mapping.items()}


class SgmLayout(LdmLayout):
    """Key-level conversion between an SDXL pipeline's four components and one SGM state dict."""

    def __init__(self, unet_config: Mapping[str, Any], vae_config: Mapping[str, Any], text_layers: int,
                 text_2_layers: int):
        self.family = "sdxl"
        te2 = _reprefix(text_encoder_module_map("sd2", text_2_layers), SD2_TEXT_PREFIX, TE2_PREFIX)
        te2["text_projection"] = TE2_PREFIX + "text_projection"
        self.maps = {"unet": sdxl_unet_module_map(unet_config), "vae": vae_module_map(vae_config),
                     "text_encoder": _reprefix(text_encoder_module_map("sd1", text_layers), SD1_TEXT_PREFIX, TE1_PREFIX),
                     "text_encoder_2": te2}
        self._inverse = {theirs: (comp, ours) for comp, mapping in self.maps.items()
                         for ours, theirs in mapping.items() if not theirs.endswith(".attn.in_proj")}

    @classmethod
    def from_folder(cls, folder: str | Path) -> SgmLayout:
        cfgs = read_component_configs(Path(folder), SDXL_COMPONENTS)
        return cls(cfgs["unet"], cfgs["vae"], int(cfgs["text_encoder"]["num_hidden_layers"]),
                   int(cfgs["text_encoder_2"]["num_hidden_layers"]))

    @classmethod
    def from_ldm_shapes(cls, shapes: Mapping[str, tuple[int, ...]]) -> SgmLayout:
        unet = {**_infer_unet_config(shapes), "addition_embed_type": "text_time"}
        return cls(unet, _infer_vae_config(shapes), _count_indices(shapes, TE1_PREFIX + "text_model.encoder.layers."),
                   _count_indices(shapes, TE2_PREFIX + "transformer.resblocks."))

    def to_ldm(self, component: str, key: str) -> tuple[str, Part]:
        if component == "text_encoder_2":
            if key == "text_projection.weight":
                return TE2_PREFIX + "text_projection", Part(component, key, "transpose")
            key = canonical_text_key(key)
        return super().to_ldm(component, key)

    def from_ldm(self, ldm_key: str) -> list[Part] | None:
        if ldm_key == TE2_PREFIX + "text_projection":
            return [Part("text_encoder_2", "text_projection.weight", "transpose")]
        if ldm_key.startswith(TE2_PREFIX) and ldm_key.endswith((".attn.in_proj_weight", ".attn.in_proj_bias")):
            base, _, param = ldm_key.rpartition("_")
            layer = base[len(TE2_PREFIX + "transformer.resblocks."):].split(".")[0]
            if not layer.isdigit():
                return None
            return [Part("text_encoder_2", f"text_model.encoder.layers.{layer}.{q}.{param}", "qkv", i)
                    for i, q in enumerate(_QKV)]
        return super().from_ldm(ldm_key)


def is_sgm_shapes(keys: Any) -> bool:
    """True for an SDXL base single file (both embedders present)."""
    return any(k.startswith(TE2_PREFIX) for k in keys) and any(k.startswith(TE1_PREFIX) for k in keys)
