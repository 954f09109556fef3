"""Per-image crop boxes: where a dataset keeps them, reading and writing them.

A box is `[x, y, w, h]` in the image file's own pixels (after EXIF orientation). A dataset with
a metadata.jsonl keeps it in the image's row (`"crop": [x, y, w, h]`), beside the caption; any
other dataset (DreamBooth folders, .txt captions) in `crops.jsonl` rows of `file_name` and `crop`.
Writes are atomic and keep every other row and field.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdstudio.core.captions.storage import METADATA
from sdstudio.core.io import atomic

CROPS = "crops.jsonl"
CROPS_LOG = "crops.log.jsonl"  # the passes of `sdstudio dataset crop`, for --undo
Box = tuple[int, int, int, int]


def clip_box(box: Box, size: tuple[int, int]) -> Box | None:
    """The box cut to a picture of `size` (a box drawn on a larger version of the file), or None
    when nothing of it is left."""
    x, y, w, h = box
    x1, y1 = min(x + w, size[0]), min(y + h, size[1])
    return (x, y, x1 - x, y1 - y) if x1 > x and y1 > y else None


def crops_file(root: Path) -> Path:
    """The file that holds (or will hold) the folder's crop boxes."""
    return root / METADATA if (root / METADATA).exists() else root / CROPS


def parse_box(value: object) -> Box | None:
    """A well-formed box (four whole numbers, positive width and height) or None."""
    if not isinstance(value, list) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in value):
        return None
    x, y, w, h = (int(v) for v in value)
    return (x, y, w, h) if w > 0 and h > 0 and x >= 0 and y >= 0 else None


def read_crops(root: Path) -> tuple[dict[str, Box], list[tuple[int, str]]]:
    """file_name -> box, and (line number, what is wrong) for each row whose `crop` is malformed."""
    path = crops_file(root)
    out: dict[str, Box] = {}
    bad: list[tuple[int, str]] = []
    if not path.exists():
        return out, bad
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue  # the caption check reports bad JSON lines of metadata.jsonl
        if not isinstance(row, dict) or "crop" not in row or "file_name" not in row:
            continue
        box = parse_box(row["crop"])
        if box is None:
            bad.append((lineno, f"crop must be [x, y, w, h] in whole pixels, got {row['crop']!r}"))
        else:
            out[str(row["file_name"])] = box
    return out, bad


def write_crops(root: Path, boxes: dict[str, Box | None]) -> Path:
    """Set (a box) or clear (None) the crop of each named file; returns the file written."""
    path = crops_file(root)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    todo = dict(boxes)
    out: list[str] = []
    for line in lines:
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            out.append(line)
            continue
        if isinstance(row, dict) and row.get("file_name") in todo:
            box = todo.pop(row["file_name"])
            if box is None:
                row.pop("crop", None)
                if path.name == CROPS:
                    continue  # a crops.jsonl row holds nothing else
            else:
                row["crop"] = list(box)
            line = json.dumps(row, ensure_ascii=False)
        out.append(line)
    out.extend(json.dumps({"file_name": n, "crop": list(b)}, ensure_ascii=False) for n, b in todo.items() if b is not None)
    atomic.write_text(path, "\n".join(out) + "\n" if out else "")
    return path
