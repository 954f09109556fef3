"""Every file of a dataset is decoded and judged, with the reason; captions round-trip to disk."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, needs_shared
from sdstudio.cli import main
from sdstudio.core.dataset import check_dataset, load_rgb, preprocess, write_caption
from sdstudio.core.errors import DatasetError
from sdstudio.core.training.examples import instance_examples
from sdstudio.core.config import TrainConfig

SEED_CAT = SHARED / "seed-data" / "full-finetune" / "cat"


def png_bytes(mode: str, size=(64, 48), colour=None) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG" if mode != "CMYK" else "JPEG")
    return buf.getvalue()


@pytest.fixture()
def messy(tmp_path: Path) -> Path:
    d = tmp_path / "messy"
    d.mkdir()
    (d / "good.png").write_bytes(png_bytes("RGB", colour=(10, 200, 30)))
    (d / "good2.png").write_bytes((d / "good.png").read_bytes())
    (d / "alpha.png").write_bytes(png_bytes("RGBA", colour=(255, 0, 0, 0)))  # fully transparent red
    (d / "palette.png").write_bytes(png_bytes("P", colour=3))
    (d / "cmyk.jpg").write_bytes(png_bytes("CMYK", colour=(255, 0, 0, 0)))  # pure cyan ink
    deep = Image.fromarray(np.full((48, 64), 65535, dtype=np.uint16))
    deep.save(d / "deep16.png")
    full = io.BytesIO()
    Image.new("RGB", (256, 256), (9, 9, 9)).save(full, format="JPEG")
    (d / "truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (d / "tiny.png").write_bytes(png_bytes("RGB", size=(8, 8), colour=(1, 2, 3)))
    (d / "nocaption.png").write_bytes(png_bytes("RGB", colour=(5, 5, 200)))
    (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (d / "Thumbs.db").write_bytes(b"junk")
    (d / "notes.pdf").write_bytes(b"%PDF-1.4")
    (d / ".ipynb_checkpoints").mkdir()
    (d / ".ipynb_checkpoints" / "good-checkpoint.png").write_bytes(png_bytes("RGB"))
    rows = [{"file_name": n, "text": f"caption of {n}"} for n in
            ("good.png", "good2.png", "alpha.png", "palette.png", "cmyk.jpg", "deep16.png", "truncated.jpg",
             "tiny.png", "gone.png")]
    text = "\n".join(json.dumps(r) for r in rows) + '\n{"file_name": "broken.png", "text": \n{"file_name": "x.png"}\n'
    (d / "metadata.jsonl").write_text(text)
    return d


def test_every_problem_is_reported_per_file(messy):
    report = check_dataset(messy, captions=True)
    by_name = {f.name: f for f in report.files}
    assert by_name["good.png"].status == "ok"
    assert by_name["good2.png"].reason.startswith("duplicate of good.png")
    assert "unreadable or truncated" in by_name["truncated.jpg"].reason
    assert "too small (8x8" in by_name["tiny.png"].reason
    assert by_name["nocaption.png"].reason.startswith("no caption")
    assert "stray system file" in by_name[".DS_Store"].reason
    assert "stray system file" in by_name["Thumbs.db"].reason
    assert "not an image (.pdf)" in by_name["notes.pdf"].reason
    assert by_name[".ipynb_checkpoints/"].reason.startswith("stray folder")
    assert "caption in metadata.jsonl for a missing file" in by_name["gone.png"].reason
    assert "not valid JSON" in by_name["metadata.jsonl:10"].reason
    assert "needs \"file_name\" and \"text\"" in by_name["metadata.jsonl:11"].reason
    for converted in ("alpha.png", "palette.png", "cmyk.jpg", "deep16.png"):
        assert by_name[converted].usable, converted
    assert {f.name for f in report.usable} == {"good.png", "alpha.png", "palette.png", "cmyk.jpg", "deep16.png"}


def test_conversions_give_8bit_rgb(messy):
    alpha = load_rgb(messy / "alpha.png")
    assert alpha.mode == "RGB" and alpha.getpixel((0, 0)) == (255, 255, 255)  # composited on white
    deep = load_rgb(messy / "deep16.png")
    assert deep.mode == "RGB" and deep.getpixel((0, 0)) == (255, 255, 255)
    cmyk = load_rgb(messy / "cmyk.jpg")
    r, g, b = cmyk.getpixel((0, 0))
    assert r < 60 and g > 200 and b > 200  # cyan stays cyan


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (60, 40), (0, 0, 0))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rot.jpg").size == (40, 60)


def test_training_skips_bad_files_and_refuses_an_unusable_dataset(messy, tmp_path):
    cfg = TrainConfig(train_data_dir=str(messy))
    examples, skipped = instance_examples(cfg)
    assert len(examples) == 5 and any("truncated.jpg" in s for s in skipped)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="instance_data_dir = .*no usable image .*a.jpg: unreadable"):
        instance_examples(TrainConfig(instance_data_dir=str(broken), instance_prompt="x"))


def test_captions_are_saved_to_the_datasets_own_store(messy, tmp_path):
    write_caption(messy, "good.png", "a green field")
    assert check_dataset(messy).files and {f.name: f.caption for f in check_dataset(messy).files}["good.png"] == "a green field"
    sidecar_dir = tmp_path / "sidecars"
    sidecar_dir.mkdir()
    (sidecar_dir / "one.png").write_bytes(png_bytes("RGB"))
    (sidecar_dir / "one.txt").write_text("old")
    write_caption(sidecar_dir, "one.png", "new caption")
    assert (sidecar_dir / "one.txt").read_text().strip() == "new caption"
    assert check_dataset(sidecar_dir).caption_store == "txt"


def test_preprocess_center_crop_of_the_shortest_side():
    im = Image.new("RGB", (200, 100), (0, 0, 0))
    im.paste((255, 0, 0), (0, 0, 40, 100))  # red left fifth, cropped away by a centre crop
    out = preprocess(im, 64, center_crop=True)
    assert out.size == (64, 64) and out.getpixel((0, 32)) == (0, 0, 0)
    assert preprocess(im, 64, center_crop=True, flip=True).size == (64, 64)


def test_cli_check_prints_each_file_and_json(messy, capsys):
    assert main(["dataset", "check", str(messy)]) == 0
    out = capsys.readouterr().out
    assert "BAD   truncated.jpg" in out and "5 usable images" in out
    assert main(["dataset", "check", str(messy), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["usable_images"] == 5 and data["summary"]["duplicates"] == 1


@needs_shared(SEED_CAT)
def test_seed_cat_folder_flags_its_duplicate():
    report = check_dataset(SEED_CAT, captions=True)
    dups = [f.name for f in report.files if f.reason.startswith("duplicate")]
    assert dups == ["10.jpg"] and len(report.usable) == 14
