"""Model merges with A1111's semantics, streamed so that any box can do them.

API for the studio and the CLI:
    merge_files(a, out, b=None, c=None, method="weighted-sum", multiplier=0.5,
                loras=[("style.safetensors", 0.8)], vae=None, dtype="fp16",
                fmt="single-file", config=None, overwrite=False,
                progress=lambda done_bytes, total_bytes: ...) -> Path
    `PreviewMerger` (merge_preview.py) re-applies a multiplier to a live pipeline in place.

Semantics (as A1111's checkpoint merger): weighted sum (1 - M)·A + M·B; add difference
A + M·(B - C); only keys of A are written (keys only in A are copied); keys without "model"
in their name (noise-schedule buffers) and `position_ids` are copied from A, never merged;
an inpainting A (9-channel `conv_in`) merges its first 4 channels with a normal B; LoRAs are
added on top as M_lora·(alpha/rank)·up@down; everything is computed in fp32 and written in
the chosen dtype. The recipe (inputs' names and sha256, method, multiplier, LoRAs, VAE,
sdstudio version) goes into the file's `sd_merge_recipe` metadata.

Memory: inputs are read one tensor, or one block of rows, at a time (see merge_sources and
safetensors_stream), so peak memory stays near a few blocks whatever the model size.
`.ckpt` inputs are the exception: unpickling holds them whole.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sdstudio.core.errors import ModelError
from sdstudio.core.io.ldm_layout import UNET_PREFIX, LdmLayout
from sdstudio.core.io.hashing import file_sha256
from sdstudio.core.merge.sources import ModelSource, open_model, open_vae
from sdstudio.core.models import detect_family, family_from_keys

METHODS = ("weighted-sum", "add-difference")
OUT_DTYPES = {"fp16": "F16", "fp32": "F32", "bf16": "BF16"}
FORMATS = ("single-file", "diffusers")
CHUNK_ELEMENTS = 1 << 22  # rows are merged in blocks of about 4 M values (16 MB in fp32)
CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
Progress = Callable[[int, int], None]


def weighted_sum(a: Any, b: Any, m: float, out: Any = None) -> Any:
    """(1 - m)·a + m·b. The one formula the file merge and the live preview share."""
    import torch

    return torch.lerp(a, b, m, out=out)


def add_difference(a: Any, diff: Any, m: float, out: Any = None) -> Any:
    """a + m·diff, diff = B - C (shared with the live preview)."""
    import torch

    return torch.add(a, diff, alpha=m, out=out)


def is_merged_key(key: str) -> bool:
    """A1111 merges keys with "model" in their name, never the text encoder's position_ids."""
    return "model" in key and not key.endswith("position_ids")


def check_compatible(a: ModelSource, other: ModelSource, role: str) -> None:
    """Refuse models of another family or shape, naming the first key that differs."""
    for key in a.keys():
        if not is_merged_key(key):
            continue
        missing = key not in other
        if missing and not key.startswith((UNET_PREFIX, "cond_stage_model.")):
            continue  # e.g. a B without VAE: A's is kept
        sa, sb = a.shapes[key], None if missing else other.shapes[key]
        if sa == sb:
            continue
        if key == CONV_IN and sb is not None and len(sa) == len(sb) == 4 and sa[0] == sb[0] and sa[2:] == sb[2:]:
            if sa[1] > sb[1]:
                continue  # inpainting A, normal B: merge the first channels
            raise ModelError(f"{other.path} has a {sb[1]}-channel conv_in and A ({a.path}) {sa[1]}: when merging "
                             "an inpainting model with a normal one, the inpainting model must be A")
        fa, fb = detect_family(a.keys()), detect_family(other.keys())
        theirs = "missing" if missing else f"shape {list(sb)}"
        raise ModelError(f"{a.path} and {role} {other.path} are not the same kind of model (A: {fa}, {role}: {fb}); "
                         f"first mismatched key {key}: A has shape {list(sa)}, {role} {theirs}")


def _lora_plan(loras: Sequence[tuple[str, float]], layout: LdmLayout,
               shapes: dict[str, tuple[int, ...]]) -> dict[str, list[tuple[Any, Any, float]]]:
    """LDM key -> [(Part, LoraModule, scale)] for every module the LoRAs patch."""
    from sdstudio.core.lora.formats import read_lora_file

    plan: dict[str, list[tuple[Any, Any, float]]] = {}
    for path, scale in loras:
        weights = read_lora_file(path)
        for (component, module_path), module in weights.modules.items():
            try:
                key, part = layout.to_ldm(component, f"{module_path}.weight")
            except ModelError:
                raise ModelError(f"{path}: LoRA module {component}.{module_path} has no place in the base model "
                                 "(a LoRA for another architecture?)") from None
            if key not in shapes:
                raise ModelError(f"{path}: LoRA module {component}.{module_path} patches {key}, "
                                 "which the base model does not have")
            plan.setdefault(key, []).append((part, module, float(scale)))
    return plan


def _lora_delta(entries: list[tuple[Any, Any, float]], shape: tuple[int, ...], key: str) -> Any:
    import torch

    total = torch.zeros(shape, dtype=torch.float32)
    for part, module, scale in entries:
        delta = module.delta() * scale
        if part.op == "qkv":
            rows = shape[0] // 3
            target = total[part.index * rows:(part.index + 1) * rows]
        else:
            target = total
        if delta.numel() != target.numel():
            raise ModelError(f"LoRA module for {key}: delta of shape {list(delta.shape)} does not fit weight "
                             f"{list(target.shape)} (a LoRA for another model size?)")
        target += delta.reshape(target.shape)
    return total


class _Hasher(threading.Thread):
    """sha256 of the inputs, computed while the merge runs (the header gets them at the end)."""

    def __init__(self, files: list[Path]):
        super().__init__(daemon=True)
        self.files, self.result, self.error = files, {}, None

    def run(self) -> None:
        try:
            for f in self.files:
                self.result[f] = file_sha256(f)
        except OSError as exc:
            self.error = exc


def _placeholder(i: int) -> str:
    return f"sha256-pending-{i:03d}".ljust(64, "_")


def _recipe(sources: dict[str, ModelSource | None], loras: Sequence[tuple[str, float]], method: str | None,
            multiplier: float, dtype: str, hash_slots: dict[Path, str]) -> dict[str, Any]:
    from sdstudio import __version__

    def ident(src: ModelSource | None) -> dict[str, str] | None:
        if src is None:
            return None
        return {"name": src.name, "sha256": hash_slots[src.hash_file] if src.hash_file else ""}

    return {
        "type": "sdstudio", "sdstudio_version": __version__, "method": method, "multiplier": multiplier,
        "primary_model": ident(sources["a"]), "secondary_model": ident(sources["b"]),
        "tertiary_model": ident(sources["c"]), "vae": ident(sources["vae"]), "dtype": dtype,
        "loras": [{"name": Path(p).stem, "sha256": hash_slots[Path(p)], "scale": s} for p, s in loras],
    }


def merge_files(a: str | os.PathLike[str], out: str | os.PathLike[str], b: str | os.PathLike[str] | None = None,
                c: str | os.PathLike[str] | None = None, *, method: str = "weighted-sum", multiplier: float = 0.5,
                loras: Sequence[tuple[str, float]] = (), vae: str | os.PathLike[str] | None = None,
                dtype: str = "fp16", fmt: str = "single-file", config: str | os.PathLike[str] | None = None,
                overwrite: bool = False, progress: Progress | None = None) -> Path:
    """Merge A with B (and C), fuse LoRAs, bake a VAE; write OUT atomically. Returns OUT."""
    from sdstudio.core.merge.outputs import DiffusersOutput, SingleFileOutput

    if method not in METHODS:
        raise ModelError(f"unknown merge method {method!r} (expected {' or '.join(METHODS)})")
    if dtype not in OUT_DTYPES:
        raise ModelError(f"unknown dtype {dtype!r} (expected {', '.join(OUT_DTYPES)})")
    if fmt not in FORMATS:
        raise ModelError(f"unknown output format {fmt!r} (expected {' or '.join(FORMATS)})")
    if b is None and not loras:
        raise ModelError("nothing to merge: give a second model B or at least one --lora")
    if method == "add-difference" and (b is None or c is None):
        raise ModelError("add-difference needs three models: A + M·(B - C)")
    out_path = Path(os.path.expanduser(str(out)))
    if out_path.exists() and not overwrite:
        raise ModelError(f"{out_path} already exists (choose another -o or pass --overwrite)")
    for spec, _ in loras:
        if not Path(spec).is_file():
            raise ModelError(f"{spec}: no such LoRA file")
    opened: list[ModelSource] = []
    try:
        src_a = open_model(a)
        opened.append(src_a)
        src_b = open_model(b) if b is not None else None
        src_c = open_model(c) if method == "add-difference" and c is not None else None
        src_vae = open_vae(vae) if vae is not None else None
        opened += [s for s in (src_b, src_c, src_vae) if s is not None]
        for role, src in (("B", src_b), ("C", src_c)):
            if src is not None:
                check_compatible(src_a, src, role)
        family_from_keys(src_a.keys(), str(src_a.path))  # A itself must be an SD 1.x/2.x or SDXL model
        if src_vae is not None:
            for key in src_vae.keys():
                if key in src_a.shapes and src_a.shapes[key] != src_vae.shapes[key]:
                    raise ModelError(f"{src_vae.path}: VAE tensor {key} has shape {list(src_vae.shapes[key])}, "
                                     f"the model expects {list(src_a.shapes[key])}")
        lora_plan = _lora_plan(loras, src_a.layout, src_a.shapes) if loras else {}
        config_dir = Path(config) if config else next((s.config_dir for s in (src_a, src_b, src_c)
                                                        if s is not None and s.config_dir), None)
        if fmt == "diffusers" and config_dir is None:
            raise ModelError("--format diffusers needs the configs and tokenizer of a diffusers folder of the same "
                             "architecture: pass --config DIR (or give one input as a diffusers folder)")

        hash_files = [s.hash_file for s in (src_a, src_b, src_c, src_vae) if s is not None and s.hash_file]
        hash_files += [Path(p) for p, _ in loras]
        hash_files = list(dict.fromkeys(hash_files))
        slots = {f: _placeholder(i) for i, f in enumerate(hash_files)}
        recipe = _recipe({"a": src_a, "b": src_b, "c": src_c, "vae": src_vae}, loras,
                         method if src_b is not None else None, multiplier, dtype, slots)
        metadata = {"format": "pt", "sd_merge_recipe": json.dumps(recipe)}
        hasher = _Hasher(hash_files)
        hasher.start()

        entries = []
        for key in src_a.keys():
            src = src_vae if src_vae is not None and key in src_vae else src_a
            code = src.dtypes[key]
            is_float = code in ("F16", "F32", "BF16", "F64")
            entries.append((key, OUT_DTYPES[dtype] if is_float else code, src_a.shapes[key]))
        if fmt == "diffusers":
            output: Any = DiffusersOutput(out_path, entries, metadata, config_dir)
        else:
            output = SingleFileOutput(out_path, entries, metadata)
        try:
            _stream(output, entries, src_a, src_b, src_c, src_vae, method, multiplier, lora_plan, progress)
            hasher.join()
            if hasher.error is not None:
                raise ModelError(f"cannot hash the inputs ({hasher.error})")
            return output.finish({slots[f]: hasher.result[f] for f in hash_files})
        except BaseException:
            output.abort()
            raise
    finally:
        for src in opened:
            src.close()


def write_model(src: ModelSource, output_for: Callable[[list[tuple[str, str, tuple[int, ...]]]], Any], dtype: str,
                progress: Progress | None = None) -> Path:
    """Write one model as it is (no merge), every float tensor in `dtype`, through the output
    `output_for(entries)` makes (a `SingleFileOutput` or `DiffusersOutput`): a full fine-tune's export."""
    if dtype not in OUT_DTYPES:
        raise ModelError(f"unknown dtype {dtype!r} (expected {', '.join(OUT_DTYPES)})")
    entries = [(key, OUT_DTYPES[dtype] if src.dtypes[key] in ("F16", "F32", "BF16", "F64") else src.dtypes[key],
                src.shapes[key]) for key in src.keys()]
    output = output_for(entries)
    try:
        _stream(output, entries, src, None, None, None, METHODS[0], 0.0, {}, progress)
        return output.finish({})
    except BaseException:
        output.abort()
        raise


def _stream(output: Any, entries: list[tuple[str, str, tuple[int, ...]]], a: ModelSource, b: ModelSource | None,
            c: ModelSource | None, vae: ModelSource | None, method: str, m: float,
            lora_plan: dict[str, list[tuple[Any, Any, float]]], progress: Progress | None) -> None:
    import math

    from sdstudio.core.io.safetensors_io import torch_dtype

    done, total = 0, max(output.total_bytes, 1)
    for key, code, shape in entries:
        out_dtype = torch_dtype(code)
        if vae is not None and key in vae:
            src, merge = vae, False
        else:
            src, merge = a, is_merged_key(key)
        other = b if merge and b is not None and key in b else None
        delta = _lora_delta(lora_plan[key], shape, key) if merge and key in lora_plan else None
        rows = shape[0] if shape else 1
        row_elems = math.prod(shape[1:]) if shape else 1
        step = max(1, CHUNK_ELEMENTS // max(row_elems, 1)) if output.can_chunk(key) and shape else rows
        for lo in range(0, rows, step):
            hi = min(rows, lo + step)
            t = src.read(key, lo, hi) if shape else src.read(key)
            if other is not None or delta is not None:
                t = t.float()
            if other is not None:
                t = _merge_block(t, key, lo, hi, other, c, method, m)
            if delta is not None:
                t = t + (delta[lo:hi] if shape else delta)
            output.write(key, t.to(out_dtype))
            done += t.numel() * out_dtype.itemsize
        if progress is not None:
            progress(min(done, total), total)


def _merge_block(a32: Any, key: str, lo: int, hi: int, b: ModelSource, c: ModelSource | None, method: str,
                 m: float) -> Any:
    b32 = b.read(key, lo, hi).float()
    channels = b32.shape[1] if b32.dim() == 4 and b32.shape[1] != a32.shape[1] else None
    if method == "add-difference":
        if c is None or key not in c:
            return a32  # A1111: no C tensor means no difference
        diff = b32 - c.read(key, lo, hi).float()
        merged = add_difference(a32[:, :channels] if channels else a32, diff, m)
    else:
        merged = weighted_sum(a32[:, :channels] if channels else a32, b32, m)
    if channels:  # inpainting A: only its first channels meet B
        out = a32.clone()
        out[:, :channels] = merged
        return out
    return merged
