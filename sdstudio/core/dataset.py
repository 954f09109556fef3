"""Datasets: scan a folder, check every file by decoding it, read and write captions.

Captions come from `metadata.jsonl` (`{"file_name", "text"}`), else from `.txt` or `.caption`
sidecars (see `sdstudio.core.captions.storage`); DreamBooth folders need none. Every problem is reported per file with its reason, and
training uses only the files that passed.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.captions import storage
from sdstudio.core.errors import DatasetError
from sdstudio.core.filetypes import IMAGE_SUFFIXES
from sdstudio.core.masks.crops import CROPS, CROPS_LOG
from sdstudio.core.masks.source import MASKS_LOG, is_mask_name

STRAY_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
STRAY_DIRS = {".ipynb_checkpoints", "__macosx", ".git"}
METADATA = storage.METADATA
OK, WARN, BAD = "ok", "warning", "bad"


@dataclass
class FileReport:
    """One file's verdict; `status` is ok, warning (usable) or bad (skipped)."""

    name: str  # path relative to the dataset root, '/'-separated
    status: str
    reason: str = ""
    caption: str | None = None
    width: int = 0
    height: int = 0
    mode: str = ""

    @property
    def usable(self) -> bool:
        return self.status != BAD


@dataclass
class DatasetReport:
    root: Path
    caption_store: str | None  # "metadata.jsonl" | "txt" | "caption" | None (no captions: DreamBooth)
    files: list[FileReport] = field(default_factory=list)
    masks: Any = None  # a core.masks.report.MasksReport when the check was asked for masks

    @property
    def usable(self) -> list[FileReport]:
        return [f for f in self.files if f.usable and f.width]

    def summary(self) -> dict[str, Any]:
        images = [f for f in self.files if f.width]
        sides = [min(f.width, f.height) for f in images]
        return {
            "root": str(self.root),
            "caption_store": self.caption_store,
            "files": len(self.files),
            "usable_images": len(self.usable),
            "ok": sum(f.status == OK for f in self.files),
            "warnings": sum(f.status == WARN for f in self.files),
            "bad": sum(f.status == BAD for f in self.files),
            "duplicates": sum(f.reason.startswith("duplicate") for f in self.files),
            "missing_captions": sum(f.reason.startswith("no caption") for f in self.files),
            "min_side": min(sides) if sides else 0,
            "max_side": max(max(f.width, f.height) for f in images) if images else 0,
            "median_side": int(statistics.median(sides)) if sides else 0,
        }

    def to_json(self) -> dict[str, Any]:
        out = {"summary": self.summary(), "files": [asdict(f) for f in self.files]}
        if self.masks is not None:
            out["masks"] = self.masks.to_json()
        return out


def load_rgb(path: str | os.PathLike[str]) -> Any:
    """Decode an image fully as 8-bit RGB: EXIF orientation applied, alpha composited on white,
    16-bit and CMYK converted. Raises OSError/ValueError on unreadable or truncated files."""
    return decode(path)[0]


def decode(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """(8-bit RGB image, the file's own mode): one full decode serves both the check and its report."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        mode = im.mode
        im.load()  # decodes everything: a truncated file fails here
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            import numpy as np

            arr = np.asarray(im, dtype=np.float64)
            peak = 65535.0 if arr.max() > 255 else 255.0
            im = Image.fromarray((arr / peak * 255.0).clip(0, 255).astype("uint8"), mode="L")
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA"):
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(background, rgba)
        return im.convert("RGB"), mode


def read_metadata(root: Path, caption_column: str = "text") -> tuple[dict[str, str], list[FileReport]]:
    """Captions from metadata.jsonl and a report entry for every bad line."""
    captions, bad = storage.parse_metadata(root, caption_column)
    return captions, [FileReport(f"{METADATA}:{lineno}", BAD, reason) for lineno, reason in bad]


def _walk(root: Path) -> tuple[list[Path], list[FileReport]]:
    images: list[Path] = []
    strays: list[FileReport] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in list(dirnames):
            if d.lower() in STRAY_DIRS:
                dirnames.remove(d)
                strays.append(FileReport(str((here / d).relative_to(root)) + "/", BAD, "stray folder, ignored"))
        dirnames.sort()
        siblings = set(filenames)
        for name in sorted(filenames):
            p = here / name
            rel = p.relative_to(root).as_posix()
            low = name.lower()
            if low in STRAY_FILES or low.startswith("._"):
                strays.append(FileReport(rel, BAD, "stray system file, ignored"))
            elif is_mask_name(name, siblings):
                continue  # NAME-mask.png: the subject mask of image NAME (core/masks/source.py)
            elif p.suffix.lower() in IMAGE_SUFFIXES:
                images.append(p)
            elif storage.is_caption_file(name) or low in (CROPS, CROPS_LOG, MASKS_LOG):
                continue  # captions, crop boxes and the logs that undo passes
            else:
                strays.append(FileReport(rel, BAD, f"not an image ({p.suffix or 'no extension'}), ignored"))
    return images, strays


def image_files(root: str | os.PathLike[str]) -> list[Path]:
    """The image files of a dataset folder, in the order the check reports them (nothing decoded)."""
    return _walk(Path(root))[0]


def check_dataset(root: str | os.PathLike[str], captions: bool | None = None, min_side: int = 32,
                  resolution: int | None = None, caption_column: str = "text", masks: bool = False,
                  mask_dir: str | os.PathLike[str] | None = None) -> DatasetReport:
    """Check every file of a dataset folder.

    `captions`: True requires a caption per image (text-to-image), False ignores captions
    (DreamBooth), None uses them when the folder has any. `masks` (or a `mask_dir`) adds each
    image's mask coverage and crop box (`report.masks`, see core/masks/report.py).
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found")
    images, reports = _walk(base)
    meta_path = base / METADATA
    caption_map: dict[str, str] = {}
    store: str | None = None
    if meta_path.exists() and captions is not False:
        store = METADATA
        caption_map, problems = read_metadata(base, caption_column)
        reports.extend(problems)
    elif captions is not False and (sidecar := storage.sidecar_store(images)):
        store = storage.store_label(sidecar)
    elif captions:
        store = METADATA  # required but absent: every image reports a missing caption
    seen: dict[str, str] = {}
    image_names = set()
    for p in images:
        rel = p.relative_to(base).as_posix()
        image_names.add(rel)
        rep = FileReport(rel, OK)
        if store == METADATA:
            rep.caption = caption_map.get(rel)
        elif store in ("txt", "caption"):
            rep.caption = storage.read_captions(base, [p], "." + store)[rel]
        try:
            digest = hashlib.sha1(p.read_bytes()).hexdigest()
            im, rep.mode = decode(p)
            rep.width, rep.height = im.size
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file, named
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            rep.status, rep.reason = BAD, f"unreadable or truncated image ({msg})"
            reports.append(rep)
            continue
        if digest in seen:
            rep.status, rep.reason = BAD, f"duplicate of {seen[digest]} (same contents), skipped"
        elif min(rep.width, rep.height) < min_side:
            rep.status, rep.reason = BAD, f"too small ({rep.width}x{rep.height}; the shortest side must be >= {min_side} px)"
        elif store is not None and captions is not False and not (rep.caption or "").strip():
            rep.status = BAD
            rep.reason = "no caption" + (f" (add a line to {METADATA})" if store == METADATA else f" (add a .{store} file)")
        elif resolution and min(rep.width, rep.height) < resolution:
            rep.status, rep.reason = WARN, f"smaller than resolution {resolution}; will be upscaled"
        elif rep.mode not in ("RGB", "L"):
            rep.status, rep.reason = WARN, f"{rep.mode} image converted to 8-bit RGB"
        seen.setdefault(digest, rel)
        reports.append(rep)
    for name in sorted(set(caption_map) - image_names):
        reports.append(FileReport(name, BAD, f"caption in {METADATA} for a missing file"))
    out = DatasetReport(base, store, reports)
    if masks or mask_dir:
        from sdstudio.core.masks.report import check_masks

        out.masks = check_masks(base, [(f.name, f.width, f.height) for f in reports if f.width], mask_dir)
    return out


def require_usable(report: DatasetReport, field_name: str) -> list[FileReport]:
    """The usable files, or DatasetError naming the config field when there are none."""
    usable = report.usable
    if not usable:
        bad = [f for f in report.files if not f.usable][:3]
        detail = "; ".join(f"{f.name}: {f.reason}" for f in bad) or "the folder is empty"
        raise DatasetError(f"{field_name} = {report.root}: no usable image ({detail}). "
                           f"Run `sdstudio dataset check {report.root}` for the full report.")
    return usable


def write_caption(root: str | os.PathLike[str], file_name: str, text: str) -> Path:
    """Save one caption to the dataset's own store (metadata.jsonl if it has one, else the sidecar
    extension its images use, .txt when none has one)."""
    base = Path(root)
    images, _ = _walk(base)
    store = storage.detect_store(base, images) or ".txt"
    return storage.write_captions(base, store, {file_name: text})[0]


def crop_box(width: int, height: int, resolution: int, center_crop: bool, rng: Any = None) -> tuple[float, tuple[int, int, int, int]]:
    """(scale, crop box in the resized image): the shortest side goes to `resolution`."""
    scale = resolution / min(width, height)
    rw, rh = max(resolution, round(width * scale)), max(resolution, round(height * scale))
    if center_crop or rng is None:
        left, top = (rw - resolution) // 2, (rh - resolution) // 2
    else:
        left, top = rng.randint(0, rw - resolution), rng.randint(0, rh - resolution)
    return scale, (left, top, left + resolution, top + resolution)


def preprocess(image: Any, resolution: int, center_crop: bool = True, flip: bool = False, rng: Any = None,
               left_top: tuple[int, int] | None = None) -> Any:
    """What the model sees: resize the shortest side to `resolution`, crop a square (at `left_top`
    when given, e.g. a crop drawn earlier), maybe flip."""
    from PIL import Image

    scale, box = crop_box(image.width, image.height, resolution, center_crop, rng)
    if left_top is not None:
        box = (left_top[0], left_top[1], left_top[0] + resolution, left_top[1] + resolution)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    out = image.resize(size, Image.Resampling.BILINEAR).crop(box)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out
