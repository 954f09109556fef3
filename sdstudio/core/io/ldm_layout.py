"""Names of SD 1.x/2.x weights in diffusers folders vs the A1111/LDM single-file layout.

A diffusers folder keeps three components (unet/, vae/, text_encoder/) under diffusers and
transformers names; an A1111 `.safetensors` holds one flat state dict in the original LDM
layout (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*`). Merging,
LoRA fusing and exporting a single file need one to the other, key by key, without loading
the model: everything here is computed from the component configs (so the full SD 1.5 and
the tests' tiny model use the same code) and only renames or reshapes tensors.

Public API
- `unet_module_map(unet_config)`, `vae_module_map(vae_config)`,
  `text_encoder_module_map(family, num_layers)`: diffusers module path -> LDM module path
  (containers and parameter-holding leaves). A parameter `<module>.weight` maps to
  `<ldm module>.weight`, except the exceptions listed by `LdmLayout`.
- `LdmLayout(unet_config, vae_config, family, text_layers)` (or `layouts.layout_of_folder(dir)`):
  key-level conversion in both directions, including the VAE mid attention (diffusers linear
  <-> LDM 1x1 conv) and, for SD 2, OpenCLIP's fused `attn.in_proj_*` (q, k, v concatenated)
  and bare `positional_embedding`.
- Whole-state-dict conversion, for building test inputs, lives in `sdstudio.demo.ldm_files`: the
  streaming merger uses the key-level plan.

Text-encoder keys are handled with the `text_model.` prefix (Hugging Face CLIP layout); files
written by transformers 5 drop it and `canonical_text_key` puts it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.errors import ModelError
from sdstudio.core.filetypes import COMPONENTS

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer."
SD2_TEXT_PREFIX = "cond_stage_model.model."

# Resnet leaves: diffusers name -> LDM name (UNet ResBlock / VAE ResnetBlock).
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
               "conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_ATTN_LEAVES = ("to_q", "to_k", "to_v", "to_out.0")
_CLIP_LAYER = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
               "layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2")
_OPENCLIP_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                   "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


def _per_block(value: Any, n: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [int(value)] * n


def _transformer_modules(prefix: str, ldm: str, layers: int) -> dict[str, str]:
    """A Transformer2DModel / SpatialTransformer: same inner names on both sides."""
    inner = ["", ".norm", ".proj_in", ".proj_out"]
    for t in range(layers):
        block = f".transformer_blocks.{t}"
        inner += [block, f"{block}.norm1", f"{block}.norm2", f"{block}.norm3", f"{block}.ff",
                  f"{block}.ff.net.0", f"{block}.ff.net.0.proj", f"{block}.ff.net.2"]
        for attn in ("attn1", "attn2"):
            inner += [f"{block}.{attn}"] + [f"{block}.{attn}.{leaf}" for leaf in _ATTN_LEAVES]
    return {prefix + s: ldm + s for s in inner}


def _resnet_modules(prefix: str, ldm: str, shortcut: bool, table: Mapping[str, str]) -> dict[str, str]:
    out = {prefix: ldm}
    for ours, theirs in table.items():
        if ours == "conv_shortcut" and not shortcut:
            continue
        if ours == "time_emb_proj" and ldm.startswith(VAE_PREFIX):
            continue
        out[f"{prefix}.{ours}"] = f"{ldm}.{theirs}"
    return out


def _check_unet_config(cfg: Mapping[str, Any]) -> None:
    unsupported = [k for k in ("addition_embed_type", "class_embed_type", "encoder_hid_dim") if cfg.get(k)]
    if unsupported:
        raise ModelError(f"UNet config uses {', '.join(unsupported)}: not an SD 1.x/2.x UNet (SDXL or a variant); "
                         "the single-file layout here covers SD 1.x/2.x only")
    mid = cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid not in ("UNetMidBlock2DCrossAttn", None):
        raise ModelError(f"UNet config: mid_block_type {mid!r} is not supported (expected UNetMidBlock2DCrossAttn)")


def unet_module_map(unet_config: Mapping[str, Any]) -> dict[str, str]:
    """Every diffusers UNet2DConditionModel module that holds weights -> its LDM path."""
    _check_unet_config(unet_config)
    chans = list(unet_config["block_out_channels"])
    n = len(chans)
    lpb = _per_block(unet_config.get("layers_per_block", 2), n)
    tlayers = _per_block(unet_config.get("transformer_layers_per_block", 1), n)
    down_types = list(unet_config["down_block_types"])
    up_types = list(unet_config["up_block_types"])
    p = UNET_PREFIX
    m: dict[str, str] = {
        "conv_in": p + "input_blocks.0.0", "time_embedding.linear_1": p + "time_embed.0",
        "time_embedding.linear_2": p + "time_embed.2", "conv_norm_out": p + "out.0", "conv_out": p + "out.2",
    }
    ldm_in = 1
    for i, kind in enumerate(down_types):
        cin, cout = chans[max(i - 1, 0)], chans[i]
        for j in range(lpb[i]):
            idx = ldm_in + j
            m |= _resnet_modules(f"down_blocks.{i}.resnets.{j}", f"{p}input_blocks.{idx}.0",
                                 (cin if j == 0 else cout) != cout, _UNET_RESNET)
            if "CrossAttn" in kind:
                m |= _transformer_modules(f"down_blocks.{i}.attentions.{j}", f"{p}input_blocks.{idx}.1", tlayers[i])
        ldm_in += lpb[i]
        if i < n - 1:
            m[f"down_blocks.{i}.downsamplers.0.conv"] = f"{p}input_blocks.{ldm_in}.0.op"
            ldm_in += 1
    if unet_config.get("mid_block_type", "UNetMidBlock2DCrossAttn") is not None:
        for r in (0, 1):
            m |= _resnet_modules(f"mid_block.resnets.{r}", f"{p}middle_block.{2 * r}", False, _UNET_RESNET)
        m |= _transformer_modules("mid_block.attentions.0", f"{p}middle_block.1", tlayers[-1])
    rchans, rlpb, rtl = chans[::-1], lpb[::-1], tlayers[::-1]
    ldm_out = 0
    for i, kind in enumerate(up_types):
        prev, cout, cin = rchans[max(i - 1, 0)], rchans[i], rchans[min(i + 1, n - 1)]
        has_attn = "CrossAttn" in kind
        for j in range(rlpb[i] + 1):
            idx = ldm_out + j
            skip = cin if j == rlpb[i] else cout
            res_in = (prev if j == 0 else cout) + skip
            m |= _resnet_modules(f"up_blocks.{i}.resnets.{j}", f"{p}output_blocks.{idx}.0", res_in != cout, _UNET_RESNET)
            if has_attn:
                m |= _transformer_modules(f"up_blocks.{i}.attentions.{j}", f"{p}output_blocks.{idx}.1", rtl[i])
        ldm_out += rlpb[i] + 1
        if i < n - 1:
            m[f"up_blocks.{i}.upsamplers.0.conv"] = f"{p}output_blocks.{ldm_out - 1}.{2 if has_attn else 1}.conv"
    return m


def vae_module_map(vae_config: Mapping[str, Any]) -> dict[str, str]:
    """Every diffusers AutoencoderKL module that holds weights -> its LDM path (`first_stage_model.`)."""
    chans = list(vae_config["block_out_channels"])
    n = len(chans)
    lpb = int(vae_config.get("layers_per_block", 1))
    p = VAE_PREFIX
    m: dict[str, str] = {k: p + k for k in ("quant_conv", "post_quant_conv", "encoder.conv_in", "encoder.conv_out",
                                             "decoder.conv_in", "decoder.conv_out")}
    m["encoder.conv_norm_out"] = p + "encoder.norm_out"
    m["decoder.conv_norm_out"] = p + "decoder.norm_out"
    for i in range(n):
        cin, cout = chans[max(i - 1, 0)], chans[i]
        for j in range(lpb):
            m |= _resnet_modules(f"encoder.down_blocks.{i}.resnets.{j}", f"{p}encoder.down.{i}.block.{j}",
                                 (cin if j == 0 else cout) != cout, _VAE_RESNET)
        if i < n - 1:
            m[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = f"{p}encoder.down.{i}.downsample.conv"
    rchans = chans[::-1]
    for i in range(n):
        prev, cout = rchans[max(i - 1, 0)], rchans[i]
        level = n - 1 - i  # LDM numbers decoder levels from the bottom
        for j in range(lpb + 1):
            m |= _resnet_modules(f"decoder.up_blocks.{i}.resnets.{j}", f"{p}decoder.up.{level}.block.{j}",
                                 (prev if j == 0 else cout) != cout, _VAE_RESNET)
        if i < n - 1:
            m[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = f"{p}decoder.up.{level}.upsample.conv"
    if vae_config.get("mid_block_add_attention", True) is False:
        raise ModelError("VAE config: mid_block_add_attention=false has no SD single-file layout")
    for part in ("encoder", "decoder"):
        for r in (0, 1):
            m |= _resnet_modules(f"{part}.mid_block.resnets.{r}", f"{p}{part}.mid.block_{r + 1}", False, _VAE_RESNET)
        m[f"{part}.mid_block.attentions.0"] = f"{p}{part}.mid.attn_1"
        for ours, theirs in _VAE_ATTN.items():
            m[f"{part}.mid_block.attentions.0.{ours}"] = f"{p}{part}.mid.attn_1.{theirs}"
    return m


def text_encoder_module_map(family: str, num_layers: int) -> dict[str, str]:
    """HF CLIPTextModel modules (`text_model.` names) -> LDM paths.

    SD 1: `cond_stage_model.transformer.` + the same name. SD 2 (OpenCLIP): renamed; q_proj,
    k_proj and v_proj all map to `...attn.in_proj` (one fused tensor, see `LdmLayout`), and the
    position embedding maps to the bare parameter `cond_stage_model.model.positional_embedding`.
    """
    if family == "sd1":
        names = ["text_model.embeddings.token_embedding", "text_model.embeddings.position_embedding",
                 "text_model.final_layer_norm"]
        names += [f"text_model.encoder.layers.{i}.{leaf}" for i in range(num_layers) for leaf in _CLIP_LAYER]
        return {name: SD1_TEXT_PREFIX + name for name in names}
    if family == "sd2":
        p = SD2_TEXT_PREFIX
        m = {"text_model.embeddings.token_embedding": p + "token_embedding",
             "text_model.embeddings.position_embedding": p + "positional_embedding",
             "text_model.final_layer_norm": p + "ln_final"}
        for i in range(num_layers):
            ours, theirs = f"text_model.encoder.layers.{i}.", f"{p}transformer.resblocks.{i}."
            m |= {ours + a: theirs + b for a, b in _OPENCLIP_LAYER.items()}
            m |= {ours + q: theirs + "attn.in_proj" for q in _QKV}
        return m
    raise ModelError(f"text encoder family {family!r}: expected 'sd1' or 'sd2'")


def canonical_text_key(key: str) -> str:
    """transformers 5 saves CLIPTextModel without the `text_model.` prefix; older files have it."""
    return key if key.startswith("text_model.") else "text_model." + key


def _count_indices(keys: Iterable[str], prefix: str) -> int:
    found = {k[len(prefix):].split(".", 1)[0] for k in keys if k.startswith(prefix)}
    return len([f for f in found if f.isdigit()])


def _infer_unet_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    p = UNET_PREFIX
    ops = sorted(int(k[len(p + "input_blocks."):].split(".")[0]) for k in shapes
                 if k.startswith(p + "input_blocks.") and k.endswith(".0.op.weight"))
    if not ops or f"{p}input_blocks.0.0.weight" not in shapes:
        raise ModelError("not an SD 1.x/2.x UNet layout (no input_blocks downsamplers found)")
    lpb = ops[0] - 1
    levels = len(ops) + 1
    chans, down, up, depth = [], [], [], []
    for i in range(levels):
        idx = 1 + i * (lpb + 1)
        key = f"{p}input_blocks.{idx}.0.out_layers.3.weight"
        if key not in shapes:
            raise ModelError(f"unexpected UNet layout: {key} is missing")
        chans.append(int(shapes[key][0]))
        attn = f"{p}input_blocks.{idx}.1."
        down.append("CrossAttnDownBlock2D" if f"{attn}proj_in.weight" in shapes else "DownBlock2D")
        depth.append(max(1, _count_indices(shapes, attn + "transformer_blocks.")))
    for i in range(levels):
        has = f"{p}output_blocks.{i * (lpb + 1)}.1.proj_in.weight" in shapes
        up.append("CrossAttnUpBlock2D" if has else "UpBlock2D")
    return {"block_out_channels": chans, "layers_per_block": lpb, "down_block_types": down,
            "up_block_types": up, "transformer_layers_per_block": depth,
            "mid_block_type": "UNetMidBlock2DCrossAttn" if f"{p}middle_block.1.proj_in.weight" in shapes else None}


def _infer_vae_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    p = VAE_PREFIX + "encoder.down."
    levels = _count_indices(shapes, p)
    chans = [int(shapes[f"{p}{i}.block.0.conv2.weight"][0]) for i in range(levels)] if levels else []
    return {"block_out_channels": chans or [128, 256, 512, 512],
            "layers_per_block": _count_indices(shapes, f"{p}0.block.") or 2}


def read_component_configs(root: Path, components: Iterable[str]) -> dict[str, dict[str, Any]]:
    """`<component>/config.json` of each component of a diffusers folder; ModelError names the file."""
    cfgs = {}
    for comp in components:
        path = root / comp / "config.json"
        try:
            cfgs[comp] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: cannot read the {comp} config ({exc})") from None
    return cfgs


@dataclass(frozen=True)
class Part:
    """One diffusers tensor's share of an LDM tensor.

    op: "copy" (same tensor), "conv1x1" (LDM adds two trailing 1-dims to a linear weight),
    "qkv" (LDM concatenates q, k, v along dim 0; `index` says which third), "transpose"
    (SDXL's OpenCLIP `text_projection` is stored transposed).
    """

    component: str
    key: str
    op: str = "copy"
    index: int = 0


class LdmLayout:
    """Key-level conversion between a diffusers SD pipeline's components and one LDM state dict."""

    def __init__(self, unet_config: Mapping[str, Any], vae_config: Mapping[str, Any], family: str, text_layers: int):
        self.family = family
        self.maps = {"unet": unet_module_map(unet_config), "vae": vae_module_map(vae_config),
                     "text_encoder": text_encoder_module_map(family, text_layers)}
        self._inverse: dict[str, tuple[str, str]] = {}
        for comp, mapping in self.maps.items():
            for ours, theirs in mapping.items():
                if theirs.endswith(".attn.in_proj"):
                    continue
                self._inverse[theirs] = (comp, ours)

    @classmethod
    def from_folder(cls, folder: str | Path) -> LdmLayout:
        """Read unet/, vae/ and text_encoder/ config.json of an SD 1.x/2.x diffusers folder (for a
        folder of any family, `layouts.layout_of_folder`)."""
        root = Path(folder)
        cfgs = read_component_configs(root, COMPONENTS)
        family = "sd2" if cfgs["unet"].get("cross_attention_dim") == 1024 else "sd1"
        return cls(cfgs["unet"], cfgs["vae"], family, int(cfgs["text_encoder"]["num_hidden_layers"]))

    @classmethod
    def from_ldm_shapes(cls, shapes: Mapping[str, tuple[int, ...]]) -> LdmLayout:
        """Infer the layout of an A1111 single file from its tensor names and shapes alone
        (enough to place LoRA modules and split components; not a full diffusers config). SD 1.x/2.x
        only: `layouts.layout_of_shapes` also knows SDXL."""
        unet, vae = _infer_unet_config(shapes), _infer_vae_config(shapes)
        if any(k.startswith(SD2_TEXT_PREFIX) for k in shapes):
            family, pat = "sd2", SD2_TEXT_PREFIX + "transformer.resblocks."
        else:
            family, pat = "sd1", SD1_TEXT_PREFIX + "text_model.encoder.layers."
        return cls(unet, vae, family, _count_indices(shapes, pat))

    # diffusers -> LDM -------------------------------------------------------------------------
    def to_ldm(self, component: str, key: str) -> tuple[str, Part]:
        """The LDM key a diffusers tensor goes to, and how (`Part`, which keeps `key` as given).

        ModelError for a key with no place in the layout."""
        name = canonical_text_key(key) if component == "text_encoder" else key
        module, _, param = name.rpartition(".")
        target = self.maps[component].get(module)
        if target is None:
            raise ModelError(f"{component} weight {key!r} has no place in the SD single-file layout "
                             "(is this an SD 1.x/2.x model with matching configs?)")
        if target.endswith(".attn.in_proj"):
            which = next(i for i, q in enumerate(_QKV) if module.endswith(q))
            return f"{target}_{param}", Part(component, key, "qkv", which)
        if target.endswith(".positional_embedding"):
            return target, Part(component, key)
        op = "conv1x1" if component == "vae" and ".mid.attn_1." in target and param == "weight" else "copy"
        return f"{target}.{param}", Part(component, key, op)

    def plan_to_ldm(self, component_keys: Mapping[str, Iterable[str]]) -> dict[str, list[Part]]:
        """LDM key -> the diffusers tensors that make it (ordered; three for a fused qkv)."""
        plan: dict[str, list[Part]] = {}
        for comp, keys in component_keys.items():
            for key in keys:
                if comp == "text_encoder" and key.endswith("position_ids"):
                    continue  # a buffer; LDM files may carry their own
                ldm, part = self.to_ldm(comp, key)
                plan.setdefault(ldm, []).append(part)
        for parts in plan.values():
            parts.sort(key=lambda part: part.index)
        return plan

    # LDM -> diffusers -------------------------------------------------------------------------
    def from_ldm(self, ldm_key: str) -> list[Part] | None:
        """The diffusers tensors an LDM tensor splits into; None for keys with no diffusers place
        (EMA copies, schedule buffers, OpenCLIP's text_projection/logit_scale...)."""
        if ldm_key.endswith((".attn.in_proj_weight", ".attn.in_proj_bias")):
            base, _, param = ldm_key.rpartition("_")
            layer = base[len(SD2_TEXT_PREFIX + "transformer.resblocks."):].split(".")[0]
            if not ldm_key.startswith(SD2_TEXT_PREFIX) or not layer.isdigit():
                return None
            return [Part("text_encoder", f"text_model.encoder.layers.{layer}.{q}.{param}", "qkv", i)
                    for i, q in enumerate(_QKV)]
        hit = self._inverse.get(ldm_key)
        if hit is not None:  # a bare parameter (positional_embedding)
            return [Part(hit[0], hit[1] + ".weight")]
        module, _, param = ldm_key.rpartition(".")
        hit = self._inverse.get(module)
        if hit is None:
            return None
        comp, ours = hit
        op = "conv1x1" if comp == "vae" and ".mid.attn_1." in module and param == "weight" else "copy"
        return [Part(comp, f"{ours}.{param}", op)]


def from_ldm_tensor(part: Part, tensor: Any) -> Any:
    """The share of an LDM tensor that one diffusers tensor gets."""
    if part.op == "qkv":
        return tensor.chunk(3, dim=0)[part.index]
    if part.op == "transpose":
        return tensor.T.contiguous()
    if part.op == "conv1x1" and tensor.ndim == 4:
        return tensor[:, :, 0, 0]
    return tensor
