"""Where a folder keeps its captions, and reading and writing them there.

Three stores, the ones trainers read: `metadata.jsonl` (rows of `file_name` and `text`, the
diffusers/🤗 datasets layout), `.txt` sidecars (kohya, diffusers' DreamBooth scripts) and `.caption`
sidecars (kohya's other extension). A folder uses one: metadata.jsonl when it exists, else the
sidecar extension its images already have (.txt first). Every write is atomic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sdstudio.core.io import atomic

METADATA = "metadata.jsonl"
SIDECARS = (".txt", ".caption")
STORES = (METADATA, ".txt", ".caption")
CAPTIONS_LOG = "captions.log.jsonl"


def sidecar_of(image: Path, suffix: str) -> Path:
    return image.with_suffix(suffix)


def sidecar_caption(image: Path) -> str | None:
    """The caption in the image's .txt (else .caption) sidecar, or None when it has neither."""
    for suffix in SIDECARS:
        side = sidecar_of(image, suffix)
        if side.is_file():
            return side.read_text(encoding="utf-8", errors="replace").strip()
    return None


def sidecar_store(images: list[Path]) -> str | None:
    """".txt" or ".caption" when any image has such a sidecar (".txt" wins), else None."""
    for suffix in SIDECARS:
        if any(sidecar_of(p, suffix).is_file() for p in images):
            return suffix
    return None


def detect_store(root: Path, images: list[Path]) -> str | None:
    """The folder's caption store: metadata.jsonl, ".txt", ".caption", or None (no captions yet)."""
    if (root / METADATA).exists():
        return METADATA
    return sidecar_store(images)


def store_label(store: str | None) -> str | None:
    """How reports name a store ("metadata.jsonl", "txt", "caption")."""
    return store if store in (None, METADATA) else store.lstrip(".")


def parse_metadata(root: Path, caption_column: str = "text") -> tuple[dict[str, str], list[tuple[int, str]]]:
    """file_name -> caption of metadata.jsonl's well-formed rows, and (line number, what is wrong)
    for each bad line (the dataset check reports those; the captioner skips them)."""
    out: dict[str, str] = {}
    bad: list[tuple[int, str]] = []
    path = root / METADATA
    if not path.exists():
        return out, bad
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append((lineno, f"not valid JSON ({exc.msg}); fix or delete the line"))
            continue
        if not isinstance(row, dict) or "file_name" not in row or caption_column not in row:
            bad.append((lineno, f"needs \"file_name\" and \"{caption_column}\" fields"))
            continue
        out[str(row["file_name"])] = str(row[caption_column])
    return out, bad


def read_captions(root: Path, images: list[Path], store: str | None) -> dict[str, str | None]:
    """Relative name ('/'-separated) -> caption (None when the image has none) in `store`."""
    rels = {p.relative_to(root).as_posix(): p for p in images}
    if store == METADATA:
        rows, _ = parse_metadata(root)
        return {rel: rows.get(rel) for rel in rels}
    if store in SIDECARS:
        out: dict[str, str | None] = {}
        for rel, p in rels.items():
            side = sidecar_of(p, store)
            out[rel] = side.read_text(encoding="utf-8", errors="replace").strip() if side.is_file() else None
        return out
    return {rel: None for rel in rels}


def files_written(root: Path, store: str, names: list[str]) -> list[Path]:
    """The files a write of these captions changes (for the undo log's snapshot)."""
    if store == METADATA:
        return [root / METADATA]
    return [sidecar_of(root / n, store) for n in names]


def write_captions(root: Path, store: str, captions: dict[str, str]) -> list[Path]:
    """Write captions (relative name -> text) into `store`; metadata.jsonl keeps its other rows,
    fields and order, and new rows go at the end. Returns the files written."""
    if store not in STORES:
        raise ValueError(f"unknown caption store {store!r}; one of {', '.join(STORES)}")
    if store == METADATA:
        meta = root / METADATA
        lines = meta.read_text(encoding="utf-8").splitlines() if meta.exists() else []
        todo = dict(captions)
        out = []
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                out.append(line)
                continue
            if isinstance(row, dict) and row.get("file_name") in todo:
                row["text"] = todo.pop(row["file_name"])
                line = json.dumps(row, ensure_ascii=False)
            out.append(line)
        out.extend(json.dumps({"file_name": n, "text": t}, ensure_ascii=False) for n, t in todo.items())
        atomic.write_text(meta, "\n".join(out) + "\n")
        return [meta]
    written = []
    for name, text in captions.items():
        side = sidecar_of(root / name, store)
        atomic.write_text(side, text.strip() + "\n")
        written.append(side)
    return written


def is_caption_file(name: str) -> bool:
    """Files of the caption stores and the captions log (a folder walk skips them as non-images)."""
    low = name.lower()
    return low in (METADATA, CAPTIONS_LOG) or os.path.splitext(low)[1] in SIDECARS
