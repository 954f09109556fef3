"""Whole state dicts between the diffusers and A1111 (LDM) layouts, for building test and
benchmark inputs: the engine itself streams one tensor at a time (core/merge) and never needs
a whole model in memory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdstudio.core.filetypes import COMPONENTS
from sdstudio.core.io.ldm_layout import LdmLayout, Part, from_ldm_tensor


def to_ldm_tensor(parts: list[Part], tensors: list[Any]) -> Any:
    """Assemble one LDM tensor from its diffusers parts (same order as `parts`)."""
    import torch

    if parts[0].op == "qkv":
        return torch.cat(tensors, dim=0)
    t = tensors[0]
    if parts[0].op == "transpose":
        return t.T.contiguous()
    if parts[0].op == "conv1x1" and t.ndim == 2:
        return t[:, :, None, None]
    return t


def diffusers_to_ldm(components: Mapping[str, Mapping[str, Any]], layout: LdmLayout) -> dict[str, Any]:
    """{"unet": sd, "vae": sd, "text_encoder": sd} -> one LDM state dict (tensors shared, not copied)."""
    plan = layout.plan_to_ldm({comp: list(sd) for comp, sd in components.items()})
    out = {}
    for ldm, parts in plan.items():
        out[ldm] = to_ldm_tensor(parts, [components[p.component][p.key] for p in parts])
    return out


def ldm_to_diffusers(state_dict: Mapping[str, Any], layout: LdmLayout) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """One LDM state dict -> per-component diffusers state dicts, plus the LDM keys left out."""
    out: dict[str, dict[str, Any]] = {comp: {} for comp in COMPONENTS + (("text_encoder_2",) if layout.family == "sdxl" else ())}
    skipped = []
    for key, tensor in state_dict.items():
        parts = layout.from_ldm(key)
        if parts is None:
            skipped.append(key)
            continue
        for part in parts:
            out[part.component][part.key] = from_ldm_tensor(part, tensor)
    return out, skipped
