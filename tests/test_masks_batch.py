"""Mask and crop passes over a folder propose without writing; the crop editor's steps keep the
aspect and the box inside the image."""

from __future__ import annotations

from pathlib import Path

from sdstudio.core.masks import batch, crop_edit


def test_crop_steps_keep_the_aspect_and_stay_inside() -> None:
    size = (200, 100)
    box = crop_edit.default_box(size, 2.0)
    assert box == (0, 0, 200, 100)
    smaller = crop_edit.resize_box(box, -40, 2.0, size)
    assert smaller[2] == 2 * smaller[3] and smaller[2] == 160
    assert crop_edit.resize_box(smaller, 400, 2.0, size) == (0, 0, 200, 100)  # no larger than the image
    assert crop_edit.move_box(smaller, 500, -500, size) == (40, 0, 160, 80)  # stopped at the edges
    tiny = crop_edit.resize_box(smaller, -1000, 2.0, size)
    assert min(tiny[2:]) == 8 and tiny[2] == 2 * tiny[3]
    assert crop_edit.bucket_aspect(192, 64, 128, bucketed=True) == 4.0
    assert crop_edit.bucket_aspect(192, 64, 128, bucketed=False) == 1.0


def test_mask_pass_writes_nothing_until_written(tmp_path: Path) -> None:
    from PIL import Image, ImageDraw

    from sdstudio.core.masks.maskers import make_masker
    from sdstudio.core.masks.source import find_mask

    for i, left in enumerate((4, 30)):
        image = Image.new("RGB", (64, 64), (255, 255, 255))
        ImageDraw.Draw(image).rectangle([left, 10, left + 19, 29], fill=(255, 105, 180))
        image.save(tmp_path / f"{i}.png")
    names = ["0.png", "1.png"]
    seen: list[tuple[int, int]] = []
    proposal = batch.propose_masks(tmp_path, names, make_masker("demo"), "pink square",
                                   progress=lambda done, total: seen.append((done, total)))
    assert proposal is not None and seen[-2:] == [(1, 2), (2, 2)]
    assert sorted(proposal.masks) == names and abs(proposal.mean_coverage - 400 / 4096) < 0.01
    assert not list(tmp_path.glob("*-mask.png"))
    assert batch.propose_masks(tmp_path, names, make_masker("demo"), "pink square", stop=lambda: True) is None
    assert "wrote 2 masks" in proposal.write({"from": "test"})
    assert find_mask(tmp_path / "0.png", tmp_path).origin == "beside"
    again = batch.propose_masks(tmp_path, names, make_masker("demo"), "pink square")  # fill: masks are kept
    assert again is not None and not again.masks and set(again.skipped) == set(names)

    from sdstudio.core.masks import crops as crop_store, making

    crop_store.write_crops(tmp_path, {"1.png": (0, 0, 8, 8)})  # a box set by hand stays
    crops = batch.propose_crops(tmp_path, None, padding=0.0)
    assert crops is not None and crops.crops == {"0.png": (4, 10, 20, 20)}
    assert batch.propose_crops(tmp_path, None, stop=lambda: True) is None
    assert "wrote 1 crop boxes" in crops.write({"from": "test"})
    assert crop_store.read_crops(tmp_path)[0] == {"0.png": (4, 10, 20, 20), "1.png": (0, 0, 8, 8)}
    making.undo(tmp_path)  # the studio's mask pass is undone like the CLI's
    assert not list(tmp_path.glob("*-mask.png"))
