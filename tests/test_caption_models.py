"""Tiny BLIP, Florence-2 and Qwen2.5-VL models (random weights, real classes; see caption_models.py)
caption a folder through `sdstudio caption`, each into a different caption store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caption_models import build_blip, build_florence2, build_qwen25vl
from conftest import draw_shape_images
from sdstudio.cli import main
from sdstudio.core.captions import log
from sdstudio.core.dataset import check_dataset

CASES = [  # (builder, family, store option, the file that must hold the captions, extra options)
    (build_blip, "blip", "metadata", "metadata.jsonl", []),
    (build_florence2, "florence", "txt", "000.txt", ["--prompt", "<DETAILED_CAPTION>"]),
    (build_qwen25vl, "vlm", "caption", "000.caption", ["--prompt", "Say what you see.", "--max-words", "4"]),
]


@pytest.mark.parametrize("builder,family,store,written,extra", CASES, ids=[c[1] for c in CASES])
def test_tiny_captioner_writes_the_chosen_store(tmp_path: Path, capsys, builder, family, store, written, extra) -> None:
    model = builder(tmp_path / f"tiny-{family}")
    folder = tmp_path / "set"
    draw_shape_images(folder, 3, (230, 30, 30))
    args = ["caption", str(folder), "--model", str(model), "--store", store, "--batch-size", "2",
            "--trigger", "zq", "--json", *extra]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["captioned"] == 3 and result["store"] in ("metadata.jsonl", f".{store}")
    assert (folder / written).is_file()
    report = check_dataset(folder, captions=True)  # what training and the Dataset screen read
    captions = [f.caption for f in report.files]
    assert len(captions) == 3 and all(c and c.startswith("zq, ") and len(c) > len("zq, ") for c in captions)
    if "--max-words" in extra:
        assert all(len(c.split()) <= 1 + 4 for c in captions)
    entry = log.read(folder)[-1]
    assert entry["family"] == family and entry["model"] == str(model)
    assert entry["prompt"] == (extra[1] if extra else None)
