"""LoRA module names: diffusers module paths <-> kohya names <-> legacy attn-procs names.

Every LoRA format names the layer it patches differently:

    diffusers/PEFT  unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight
    attn-procs      down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight
    kohya           lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_down.weight
    (text encoder)  lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight
    (SDXL)          lora_te1_… (CLIP-L, `text_encoder`) and lora_te2_… (OpenCLIP bigG, `text_encoder_2`)

Inside sdstudio a module is `(component, path)`: component `unet` or `text_encoder`, path the
diffusers/transformers module path, text-encoder paths always with the `text_model.` prefix
(transformers 5 drops it from CLIPTextModel; `canonical_path` puts it back).

kohya names join the path with `_`, which is ambiguous where a segment itself holds `_`
(`to_out_0` is `to_out.0`, `ff_net_0_proj` is `ff.net.0.proj`). `SEGMENTS` is the table of
every multi-word segment of SD 1.x/2.x UNet and CLIP module paths; a kohya name is split back
by longest match against it.
"""

from __future__ import annotations

import functools

from sdstudio.core.errors import SdstudioError

UNET, TEXT_ENCODER, TEXT_ENCODER_2 = "unet", "text_encoder", "text_encoder_2"
TEXT_ENCODERS = (TEXT_ENCODER, TEXT_ENCODER_2)
KOHYA_PREFIX = {UNET: "lora_unet_", TEXT_ENCODER: "lora_te_"}
# SDXL names its two text encoders te1/te2 (kohya's sd-scripts, read by A1111 and ComfyUI).
SDXL_KOHYA_PREFIX = {UNET: "lora_unet_", TEXT_ENCODER: "lora_te1_", TEXT_ENCODER_2: "lora_te2_"}

# Path segments that contain "_" (everything else is one word or a number).
SEGMENTS = frozenset({
    # UNet2DConditionModel
    "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "to_q", "to_k", "to_v", "to_out",
    "proj_in", "proj_out", "conv_in", "conv_out", "conv_shortcut", "conv_norm_out", "time_emb_proj",
    "time_embedding", "linear_1", "linear_2",
    # CLIPTextModel
    "text_model", "self_attn", "q_proj", "k_proj", "v_proj", "out_proj", "final_layer_norm",
    "layer_norm1", "layer_norm2", "token_embedding", "position_embedding",
    # SDXL additions
    "add_embedding", "text_projection",
    # the SGM/LDM UNet names kohya's sd-scripts uses for SDXL LoRAs (lora_unet_input_blocks_4_1_...)
    "input_blocks", "middle_block", "output_blocks", "in_layers", "out_layers", "emb_layers", "skip_connection",
    "time_embed", "label_emb",
})
_LDM_UNET_HEADS = ("input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "label_emb.", "out.")
_MAX_SEGMENT_WORDS = max(s.count("_") + 1 for s in SEGMENTS)

# Legacy attn-procs LoRA layers (`...attn1.processor.to_q_lora`) -> the module they patch.
_ATTN_PROC_UNET = {"to_q_lora": "to_q", "to_k_lora": "to_k", "to_v_lora": "to_v", "to_out_lora": "to_out.0"}
_ATTN_PROC_TEXT = {"to_q_lora": "q_proj", "to_k_lora": "k_proj", "to_v_lora": "v_proj", "to_out_lora": "out_proj"}


class LoraKeyError(SdstudioError):
    """A tensor name that no LoRA format explains."""


def canonical_path(component: str, path: str) -> str:
    """Text-encoder paths carry `text_model.` (as in kohya names and the LDM layout)."""
    if component in TEXT_ENCODERS and not path.startswith("text_model.") and path != "text_projection":
        return "text_model." + path
    return path


def kohya_name(component: str, path: str, sdxl: bool = False) -> str:
    """`(unet, down_blocks.0....to_out.0)` -> `lora_unet_down_blocks_0_..._to_out_0`; an SDXL
    LoRA's text encoders are `lora_te1_` and `lora_te2_`."""
    prefixes = SDXL_KOHYA_PREFIX if sdxl or component == TEXT_ENCODER_2 else KOHYA_PREFIX
    return prefixes[component] + canonical_path(component, path).replace(".", "_")


def _split_words(words: list[str]) -> list[str]:
    segments: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(_MAX_SEGMENT_WORDS, len(words) - i), 0, -1):
            candidate = "_".join(words[i:i + n])
            if n == 1 or candidate in SEGMENTS:
                segments.append(candidate)
                i += n
                break
    return segments


def path_from_kohya(name: str) -> tuple[str, str]:
    """`lora_unet_down_blocks_0_..._to_out_0` -> `(unet, down_blocks.0....to_out.0)`."""
    for component, prefix in [*KOHYA_PREFIX.items(), *list(SDXL_KOHYA_PREFIX.items())[1:]]:
        if name.startswith(prefix):
            body = name[len(prefix):]
            break
    else:
        raise LoraKeyError(f"{name}: not a kohya LoRA name (expected lora_unet_*, lora_te_* or SDXL's lora_te1_*/lora_te2_*)")
    if not body:
        raise LoraKeyError(f"{name}: kohya LoRA name without a module path")
    path = ".".join(_split_words(body.split("_")))
    if component == UNET and path.startswith(_LDM_UNET_HEADS):
        return component, sdxl_unet_path_from_ldm(path, name)
    return component, canonical_path(component, path)


def sdxl_unet_path_from_ldm(path: str, name: str = "") -> str:
    """An SGM-named UNet module of SDXL base (`input_blocks.4.1.transformer_blocks.0.attn1.to_q`, as
    kohya's sd-scripts names SDXL LoRA layers) -> its diffusers path. SDXL LoRAs name standard SDXL
    UNets, so the table is SDXL base 1.0's layout."""
    table = _sdxl_ldm_table()
    if path not in table:
        raise LoraKeyError(f"{name or path}: an SGM-named UNet layer that SDXL base does not have ({path})")
    return table[path]


@functools.lru_cache(maxsize=1)
def _sdxl_ldm_table() -> dict[str, str]:
    from sdstudio.core.io.ldm_layout import UNET_PREFIX
    from sdstudio.core.io.sgm_layout import SDXL_BASE_UNET, sdxl_unet_module_map

    return {ldm[len(UNET_PREFIX):]: ours for ours, ldm in sdxl_unet_module_map(SDXL_BASE_UNET).items()}


def path_from_attn_procs(prefix: str, lora_layer: str) -> tuple[str, str]:
    """`down_blocks....attn1.processor` + `to_out_lora` -> `(unet, down_blocks....attn1.to_out.0)`."""
    component = UNET
    parent = prefix.removesuffix(".processor")
    for head in ("unet.", "text_encoder."):
        if parent.startswith(head):
            component = head[:-1]
            parent = parent[len(head):]
    if parent.startswith(("text_model.", "encoder.layers.")):
        component = TEXT_ENCODER
    table = _ATTN_PROC_TEXT if component == TEXT_ENCODER else _ATTN_PROC_UNET
    if lora_layer not in table:
        raise LoraKeyError(f"{prefix}.{lora_layer}: unknown attn-procs LoRA layer (expected one of "
                           f"{', '.join(table)})")
    return component, canonical_path(component, f"{parent}.{table[lora_layer]}")
