"""Captioning a folder: where captions go, what each mode touches, the log that undoes a pass,
the demo captioner, and the dataset check reading every caption store."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from sdstudio.cli import main
from sdstudio.core.captions import log, runner
from sdstudio.core.captions.compose import Style, compose
from sdstudio.core.dataset import check_dataset
from sdstudio.core.paths import data_dir
from sdstudio.demo.captioner import DemoCaptioner

SCENES = [("red", "star", "white"), ("blue", "circle", "gray"), ("green", "triangle", "black"),
          ("yellow", "square", "gray")]


def _demo_folder(folder: Path) -> dict[str, str]:
    """Four demo-world pictures; returns name -> the caption the sample set would give each."""
    from sdstudio.demo.shapes import random_scene, render

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    truth = {}
    for i, (colour, shape, bg) in enumerate(SCENES):
        scene = random_scene(rng, colour, shape, bg)
        render(scene).save(folder / f"{i:02d}.png")
        truth[f"{i:02d}.png"] = scene.caption
    return truth


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_compose_trigger_prefix_suffix_and_word_limit() -> None:
    assert compose(Style(trigger="sks"), "a red star on a white background", None) == "sks, a red star on a white background"
    assert compose(Style(trigger="sks", prefix="photo of [trigger]"), "a red star", None) == "photo of sks, a red star"
    assert compose(Style(max_words=3, suffix="flat"), "a red star on a white background", None) == "a red star, flat"
    assert compose(Style(mode="append"), "a red star", "my words") == "my words, a red star"
    with pytest.raises(ValueError, match="mode"):
        Style(mode="overwrite")


def test_demo_caption_fill_keeps_existing_captions_byte_for_byte(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "set"
    truth = _demo_folder(folder)
    (folder / "00.txt").write_bytes(b"my own words, kept  \r\n")  # odd bytes on purpose: fill must not rewrite them
    before = (folder / "00.txt").read_bytes()
    assert main(["caption", str(folder), "--model", "demo", "--trigger", "zz"]) == 0
    assert (folder / "00.txt").read_bytes() == before
    for name in ("01.png", "02.png", "03.png"):
        assert (folder / name).with_suffix(".txt").read_text() == f"zz, {truth[name]}\n"  # the folder's own store
    assert "3 images captioned" in capsys.readouterr().out
    # a second fill finds nothing to do and writes nothing
    snapshot = _files(folder)
    assert main(["caption", str(folder), "--model", "demo"]) == 0
    assert _files(folder) == snapshot


def test_fill_keeps_metadata_rows_and_their_other_fields(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    truth = _demo_folder(folder)
    kept = '{"file_name": "02.png", "text": "mine", "source": "hand"}'
    (folder / "metadata.jsonl").write_text(kept + "\n")
    assert main(["caption", str(folder), "--model", "demo"]) == 0
    lines = (folder / "metadata.jsonl").read_text().splitlines()
    assert lines[0] == kept and len(lines) == 4
    assert {json.loads(x)["file_name"]: json.loads(x)["text"] for x in lines[1:]} == {
        n: truth[n] for n in ("00.png", "01.png", "03.png")}


def test_dry_run_writes_nothing(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "set"
    truth = _demo_folder(folder)
    snapshot = _files(folder)
    assert main(["caption", str(folder), "--model", "demo", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f'01.png: (none) -> "{truth["01.png"]}"' in out and "nothing written" in out
    assert _files(folder) == snapshot


def test_undo_restores_the_folder_byte_for_byte(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "set"
    _demo_folder(folder)
    (folder / "01.caption").write_bytes(b"hand caption\n")
    (folder / "02.caption").write_bytes(b"\xef\xbb\xbfbom caption without newline")
    original = _files(folder)
    assert main(["caption", str(folder), "--model", "demo", "--mode", "replace"]) == 0
    first = _files(folder)
    assert first != original and "captions.log.jsonl" in first
    entry = log.read(folder)[-1]
    assert entry["model"] == "demo" and entry["mode"] == "replace" and entry["time"]
    assert {c["file_name"]: c["previous"] for c in entry["changes"]}["01.png"] == "hand caption"
    assert main(["caption", str(folder), "--model", "demo", "--mode", "append", "--suffix", "again"]) == 0
    # an edit after the last pass is not silently lost
    (folder / "03.caption").write_text("edited by hand\n")
    assert main(["caption", str(folder), "--undo"]) == 2
    assert "03.caption changed after captioning pass 2" in capsys.readouterr().err
    assert main(["caption", str(folder), "--undo", "--force"]) == 0
    assert _files(folder) == first
    assert main(["caption", str(folder), "--undo"]) == 0
    assert _files(folder) == original  # log gone too: nothing left of either pass
    assert main(["caption", str(folder), "--undo"]) == 2


def test_demo_captioner_matches_the_shipped_captions(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "shapes"
    shutil.copytree(data_dir() / "shapes", folder)
    (folder / "metadata.jsonl").unlink()
    assert main(["caption", str(folder), "--model", "demo", "--batch-size", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    shipped = [json.loads(line) for line in (data_dir() / "shapes" / "metadata.jsonl").read_text().splitlines()]
    written = {r["file_name"]: r["text"] for r in map(json.loads, (folder / "metadata.jsonl").read_text().splitlines())}
    rate = sum(written.get(r["file_name"]) == r["text"] for r in shipped) / len(shipped)
    print(f"demo captioner: {rate:.1%} exact matches on {len(shipped)} images, {result['images_per_s']} images/s")
    assert result["captioned"] == len(shipped) and rate >= 0.95


def test_dataset_check_reads_caption_sidecars_and_ignores_the_log(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    truth = _demo_folder(folder)
    for name in truth:
        (folder / name).with_suffix(".caption").write_text(truth[name] + "\n")
    (folder / "captions.log.jsonl").write_text("")
    report = check_dataset(folder, captions=True)
    assert report.caption_store == "caption"
    assert {f.name: f.caption for f in report.files} == truth  # no stray "not an image" entries either


def test_training_reads_caption_sidecars(tmp_path: Path) -> None:
    from sdstudio.core.config import TrainConfig
    from sdstudio.core.training.examples import instance_examples

    folder = tmp_path / "set"
    truth = _demo_folder(folder)
    assert main(["caption", str(folder), "--model", "demo", "--store", "caption"]) == 0
    examples, skipped = instance_examples(TrainConfig(train_data_dir=str(folder), method="text2image", resolution=64))
    assert {e.path.name: e.caption for e in examples} == truth and skipped == []


def test_missing_model_names_it_and_what_to_do(tmp_path: Path, capsys) -> None:
    _demo_folder(tmp_path / "set")
    assert main(["caption", str(tmp_path / "set"), "--model", "sdstudio-test/no-such-captioner"]) == 2
    err = capsys.readouterr().err
    assert "'sdstudio-test/no-such-captioner' not found" in err and "--download" in err


def test_runner_reports_progress_with_rate_and_eta(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    _demo_folder(folder)
    seen = []
    plan = runner.plan(folder, Style())
    proposals = runner.run(plan, DemoCaptioner(), Style(), batch_size=3, progress=seen.append)
    assert [p.done for p in seen] == [0, 3, 4] and len(proposals) == 4
    assert "images/s" in seen[-1].line() and "ETA" in seen[-1].line()


def test_model_folders_it_cannot_run_are_refused_with_the_reason(tmp_path: Path, capsys) -> None:
    _demo_folder(tmp_path / "set")
    pickled = tmp_path / "pickled-blip"
    pickled.mkdir()
    (pickled / "config.json").write_text('{"model_type": "blip"}')
    (pickled / "pytorch_model.bin").write_bytes(b"not unpickled")
    other = tmp_path / "a-vae"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "vit"}')
    assert main(["caption", str(tmp_path / "set"), "--model", str(pickled)]) == 2
    assert "no .safetensors weights" in capsys.readouterr().err
    assert main(["caption", str(tmp_path / "set"), "--model", str(other)]) == 2
    assert "model_type 'vit' is not a captioner" in capsys.readouterr().err
