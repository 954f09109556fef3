"""Merge inputs, whatever their format, seen as one A1111/LDM-named state dict read on demand.

`open_model(spec)` accepts `demo` (named through `models.locate_model`, like every command),
an A1111 `.safetensors` (read tensor by tensor), a `.ckpt`/`.pt` (unpickled with weights_only,
so held in memory), a diffusers folder (its component files read tensor by tensor and
renamed/reshaped through `ldm_layout`) or a full fine-tune's checkpoint (its base model with the
trained components read from the checkpoint instead). `open_vae(path)` does the
same for a standalone VAE (A1111 `vae-*.safetensors`/`.ckpt`, diffusers VAE file or folder).
Each key can be read whole or by blocks of rows, so a merge never holds a whole model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.errors import ModelError
from sdstudio.core.filetypes import PICKLE_SUFFIXES, WEIGHT_NAMES
from sdstudio.core.io.layouts import layout_of_folder, layout_of_shapes
from sdstudio.core.io.ldm_layout import SD1_TEXT_PREFIX, VAE_PREFIX, LdmLayout, vae_module_map
from sdstudio.core.io.safetensors_io import SafetensorsReader, TensorInfo, dtype_code



class DictReader:
    """An in-memory state dict behind the `SafetensorsReader` interface (for unpickled files)."""

    def __init__(self, path: Path, state_dict: dict[str, Any]):
        self.path = path
        self._sd = {k: v for k, v in state_dict.items() if hasattr(v, "shape") and hasattr(v, "dtype")}
        self.tensors = {k: TensorInfo(dtype_code(v.dtype), tuple(v.shape), 0, 0) for k, v in self._sd.items()}
        self.metadata: dict[str, str] = {}

    def read(self, key: str, start: int = 0, stop: int | None = None) -> Any:
        t = self._sd[key]
        return t[start:stop].clone() if t.dim() else t.clone()

    def close(self) -> None:
        self._sd.clear()


def open_reader(path: Path) -> SafetensorsReader | DictReader:
    if path.suffix.lower() == ".safetensors":
        return SafetensorsReader(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        from sdstudio.core.io.safeload import load_pickle_state_dict

        return DictReader(path, load_pickle_state_dict(path, mmap=True))  # streamed from disk
    raise ModelError(f"{path}: a '{path.suffix}' file is not a model (expected .safetensors, .ckpt or a diffusers folder)")


@dataclass(frozen=True)
class _Piece:
    reader: Any
    key: str
    op: str = "copy"
    index: int = 0


class ModelSource:
    """LDM key -> tensor, read lazily from one or more files."""

    def __init__(self, name: str, path: Path, kind: str, pieces: dict[str, list[_Piece]],
                 layout: LdmLayout | None = None, config_dir: Path | None = None, hash_file: Path | None = None):
        self.name, self.path, self.kind = name, path, kind
        self._pieces = pieces
        self._layout = layout
        self.config_dir = config_dir
        self.hash_file = hash_file
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        for key, parts in pieces.items():
            info = parts[0].reader.tensors[parts[0].key]
            shape = info.shape
            if parts[0].op == "qkv":
                shape = (shape[0] * len(parts),) + shape[1:]
            elif parts[0].op == "conv1x1" and len(shape) == 2:
                shape = shape + (1, 1)
            elif parts[0].op == "transpose":
                shape = tuple(shape[::-1])
            self.shapes[key], self.dtypes[key] = shape, info.dtype

    def keys(self) -> list[str]:
        return list(self._pieces)

    def __contains__(self, key: str) -> bool:
        return key in self._pieces

    @property
    def layout(self) -> LdmLayout:
        if self._layout is None:
            self._layout = layout_of_shapes(self.shapes)
        return self._layout

    def read(self, key: str, start: int = 0, stop: int | None = None) -> Any:
        """Rows [start, stop) of an LDM tensor (whole by default)."""
        import torch

        parts = self._pieces[key]
        if parts[0].op == "transpose":  # a small matrix (SDXL's text_projection): read whole
            return parts[0].reader.read(parts[0].key).T.contiguous()[start:stop]
        if parts[0].op != "qkv":
            t = parts[0].reader.read(parts[0].key, start, stop)
            return t[:, :, None, None] if parts[0].op == "conv1x1" and t.dim() == 2 else t
        rows = self.shapes[key][0] // len(parts)
        stop = self.shapes[key][0] if stop is None else stop
        blocks = []
        for i, piece in enumerate(parts):
            lo, hi = max(start, i * rows), min(stop, (i + 1) * rows)
            if lo < hi:
                blocks.append(piece.reader.read(piece.key, lo - i * rows, hi - i * rows))
        return torch.cat(blocks, dim=0)

    def close(self) -> None:
        for reader in self._readers().values():
            reader.close()

    def _readers(self) -> dict[int, Any]:
        return {id(p.reader): p.reader for parts in self._pieces.values() for p in parts}

    def with_pieces(self, pieces: dict[str, list[_Piece]], name: str, path: Path, kind: str,
                    hash_file: Path | None) -> ModelSource:
        """This model with some tensors read from elsewhere (a full fine-tune's trained components
        over its base); the files nothing reads any more are closed."""
        merged = {**self._pieces, **pieces}
        source = ModelSource(name, path, kind, merged, self._layout, self.config_dir, hash_file)
        for key, reader in self._readers().items():
            if key not in source._readers():
                reader.close()
        return source


def _canonical_ldm_key(key: str) -> str:
    """Old SD 1 files name the text encoder without `text_model.`; newer ones with it."""
    if key.startswith(SD1_TEXT_PREFIX) and not key.startswith(SD1_TEXT_PREFIX + "text_model."):
        return SD1_TEXT_PREFIX + "text_model." + key[len(SD1_TEXT_PREFIX):]
    return key


def _component_files(folder: Path, comp: str) -> list[Path]:
    return _weight_files(folder / comp, WEIGHT_NAMES[comp])


def _weight_files(d: Path, base: str) -> list[Path]:
    for pattern in (f"{base}.safetensors", f"{base}.fp16.safetensors"):
        if (d / pattern).is_file():
            return [d / pattern]
    for index_name in (f"{base}.safetensors.index.json", f"{base}.fp16.safetensors.index.json"):
        index = d / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            return [d / s for s in shards]
    for pattern in (f"{base}.bin", "pytorch_model.bin"):
        if (d / pattern).is_file():
            return [d / pattern]
    raise ModelError(f"{d}: no weights found (expected {base}.safetensors)")


def component_pieces(layout: LdmLayout, component_dirs: dict[str, Path]) -> dict[str, list[_Piece]]:
    """LDM key -> where to read it, for diffusers component folders (`unet/`, `text_encoder/`...,
    each `save_pretrained`'s files, sharded or not) renamed through `layout`."""
    comp_keys: dict[str, dict[str, Any]] = {}
    for comp, d in component_dirs.items():
        for f in _weight_files(d, WEIGHT_NAMES[comp]):
            reader = open_reader(f)
            comp_keys.setdefault(comp, {}).update({k: reader for k in reader.tensors})
    plan = layout.plan_to_ldm({c: list(ks) for c, ks in comp_keys.items()})
    return {ldm: [_Piece(comp_keys[p.component][p.key], p.key, p.op, p.index) for p in parts]
            for ldm, parts in plan.items()}


def _open_folder(folder: Path) -> ModelSource:
    from sdstudio.core.models import resolve_base_model

    resolve_base_model(str(folder))  # refuses non-SD and SDXL folders with a clear message
    layout = layout_of_folder(folder)
    comps = ("unet", "vae", "text_encoder") + (("text_encoder_2",) if layout.family == "sdxl" else ())
    pieces = component_pieces(layout, {comp: folder / comp for comp in comps})
    unet_file = _component_files(folder, "unet")[0]
    return ModelSource(folder.name, folder, "folder", pieces, layout, folder, unet_file)


def is_lora_file(path: str | os.PathLike[str]) -> bool:
    """A `.safetensors` whose tensor names are a LoRA's (kohya or diffusers/PEFT), read from the header."""
    from sdstudio.core.models import detect_family, safetensors_keys

    p = Path(os.path.expanduser(str(path)))
    if not (p.is_file() and p.suffix.lower() == ".safetensors"):
        return False
    try:
        return detect_family(safetensors_keys(p)) == "lora"
    except ModelError:
        return False


def lora_as_model_error(path: str | os.PathLike[str]) -> ModelError:
    """The one refusal of a LoRA where a model is merged (file merge and live preview say the same)."""
    return ModelError(f"{path}: this is a LoRA file, not a model to merge; choose the method 'LoRA fuse' "
                      f"(command line: sdstudio merge A --lora {path}:M)")


def open_model(spec: str | os.PathLike[str]) -> ModelSource:
    """Open a merge input named as every command names a model (`demo`, a folder, a file);
    ModelError names the input and what was expected."""
    from sdstudio.core.models import locate_model

    text = str(spec)
    try:
        kind, location = locate_model(text)
    except ModelError:
        raise ModelError(f"{text}: no such file or folder (expected 'demo', an A1111 .safetensors/.ckpt or a "
                         "diffusers folder)") from None
    if kind == "hub":
        raise ModelError(f"{text}: a hub id cannot be merged directly; download it to a local folder first")
    p = Path(location)
    if kind in ("demo", "folder"):
        return _open_folder(p)
    if kind == "full_checkpoint":
        return open_full_checkpoint(location)
    if is_lora_file(p):
        raise lora_as_model_error(text)
    reader = open_reader(p)
    pieces = {_canonical_ldm_key(k): [_Piece(reader, k)] for k in reader.tensors}
    return ModelSource(p.stem, p, "single_file", pieces, hash_file=p)


def open_full_checkpoint(checkpoint: Any, ema: bool | None = None) -> ModelSource:
    """A full fine-tune's checkpoint (a `FullCheckpoint` or its name): the run's base model with the
    tensors of the components the checkpoint holds read from its `save_pretrained` folders instead,
    renamed through the base's layout; EMA weights when it has them, unless `ema` says otherwise.
    ModelError when a trained tensor does not fit the base."""
    from sdstudio.core.full.checkpoint_model import require_full_checkpoint

    full = require_full_checkpoint(checkpoint, ema)
    base = open_model(_local_base(full.base_spec()))
    try:
        layout = base.layout
        if "text_encoder_2" in full.components and layout.family != "sdxl":
            raise ModelError(f"{full.weights_dir}: has a text_encoder_2 but the run's base is not an SDXL model")
        pieces = component_pieces(layout, full.components)
        for key, parts in pieces.items():
            info = parts[0].reader.tensors[parts[0].key]
            if key in base.shapes and parts[0].op == "copy" and tuple(info.shape) != base.shapes[key]:
                raise ModelError(f"{full.weights_dir}: {parts[0].key} has shape {list(info.shape)}, the base model "
                                 f"{base.name} has {list(base.shapes[key])}: this checkpoint was trained on another model")
        missing = [key for key in base.keys() if key not in pieces
                   and (parts := layout.from_ldm(key)) and parts[0].component in full.components]
        if missing:
            raise ModelError(f"{full.weights_dir}: {len(missing)} weights of the base model are missing from this "
                             f"checkpoint (e.g. {missing[0]}): this checkpoint was trained on another model")
        unet_files = sorted((full.weights_dir / "unet").glob("*.safetensors"))
        return base.with_pieces(pieces, name=full.name, path=full.path, kind="full_checkpoint",
                                hash_file=unet_files[0] if unet_files else None)
    except BaseException:
        base.close()
        raise


def _local_base(spec: str) -> str:
    """A hub base model as the folder the hub cache keeps it in (the trainer downloaded it there),
    read without the network; any other name as it is."""
    from sdstudio.core.models import locate_model

    kind, _ = locate_model(spec)
    if kind != "hub":
        return spec
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(spec, local_files_only=True, cache_dir=os.environ.get("HF_HUB_CACHE"))
    except Exception as exc:  # noqa: BLE001 - not cached (or cleaned up since training)
        raise ModelError(f"{spec}: the run's base model is not in the local hub cache ({type(exc).__name__}); "
                         "load it once (e.g. `sdstudio generate --model " + spec + " ...`) and try again") from None


def _vae_pieces_from_diffusers(reader: Any, config: dict[str, Any] | None) -> dict[str, list[_Piece]]:
    keys = list(reader.tensors)
    if config is None:  # infer the two numbers the name map needs from the shapes
        levels = len({k.split(".")[2] for k in keys if k.startswith("encoder.down_blocks.")})
        chans = [reader.tensors[f"encoder.down_blocks.{i}.resnets.0.conv2.weight"].shape[0] for i in range(levels)]
        lpb = len({k.split(".")[4] for k in keys if k.startswith("encoder.down_blocks.0.resnets.")})
        config = {"block_out_channels": chans, "layers_per_block": lpb}
    mapping = vae_module_map(config)
    pieces = {}
    for key in keys:
        module, _, param = key.rpartition(".")
        if module not in mapping:
            raise ModelError(f"{reader.path}: VAE weight {key!r} has no place in the SD layout")
        op = "conv1x1" if ".mid.attn_1." in mapping[module] and param == "weight" else "copy"
        pieces[f"{mapping[module]}.{param}"] = [_Piece(reader, key, op)]
    return pieces


def open_vae(path: str | os.PathLike[str]) -> ModelSource:
    """A VAE to bake in, keyed `first_stage_model.*` whatever layout the file uses."""
    p = Path(os.path.expanduser(str(path)))
    name, config = (p.name if p.is_dir() else p.stem), None
    if p.is_dir():
        folder = p / "vae" if (p / "vae").is_dir() else p  # a pipeline folder or a VAE folder
        if (folder / "config.json").is_file():
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        p = _weight_files(folder, "diffusion_pytorch_model")[0]
    if not p.is_file():
        raise ModelError(f"{p}: no such VAE file")
    reader = open_reader(p)
    keys = list(reader.tensors)
    if any(k.startswith(VAE_PREFIX) for k in keys):
        pieces = {k: [_Piece(reader, k)] for k in keys if k.startswith(VAE_PREFIX)}
    elif any(k.startswith("encoder.down_blocks.") for k in keys):
        pieces = _vae_pieces_from_diffusers(reader, config)
    elif any(k.startswith("encoder.down.") for k in keys):
        pieces = {VAE_PREFIX + k: [_Piece(reader, k)] for k in keys if k.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv."))}
    else:
        reader.close()
        sample = ", ".join(sorted(keys)[:3]) or "no tensors"
        raise ModelError(f"{p}: not a VAE (keys like {sample}; expected encoder.*/decoder.* weights)")
    return ModelSource(name, p, "vae", pieces, hash_file=p)
