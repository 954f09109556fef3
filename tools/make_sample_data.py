"""Regenerate the sample datasets shipped under data/ (deterministic).

    python tools/make_sample_data.py            # writes data/shapes and data/dreambooth/pink-heart

data/shapes/      text-to-image set: PNGs + metadata.jsonl ("file_name", "text")
data/shapes-holdout.json  lists
                  the colour x shape pairs that never occur in it (for measuring generalisation)
data/dreambooth/pink-heart/   instance images of a subject absent from the set above
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

from sdstudio.core.io import atomic
from sdstudio.core.paths import data_dir
from sdstudio.demo.shapes import BACKGROUNDS, OBJECT_COLOURS, SHAPES, random_scene, render

# Each colour and each shape is held out exactly once at most, so every word still has training images.
HOLDOUT = [("red", "star"), ("green", "square"), ("blue", "triangle"), ("yellow", "circle")]
SUBJECT = ("pink", "heart")
SUBJECT_DIR = "pink-heart"


def training_pairs() -> list[tuple[str, str]]:
    return [(c, s) for c in OBJECT_COLOURS for s in SHAPES if (c, s) not in HOLDOUT]


def write_text2image(out: Path, per_caption: int, resolution: int, seed: int) -> int:
    rng = random.Random(seed)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rows = []
    n = 0
    for colour, shape in training_pairs():
        for background in BACKGROUNDS:
            for _ in range(per_caption):
                scene = random_scene(rng, colour, shape, background, resolution)
                name = f"{n:04d}.png"
                atomic.save_image(render(scene, resolution), out / name, optimize=True)
                rows.append(json.dumps({"file_name": name, "text": scene.caption}))
                n += 1
    atomic.write_text(out / "metadata.jsonl", "\n".join(rows) + "\n")
    atomic.write_json(out.parent / f"{out.name}-holdout.json", {
        "about": "colour x shape pairs absent from this set; the demo model is measured on them",
        "pairs": [{"colour": c, "shape": s} for c, s in HOLDOUT],
        "backgrounds": list(BACKGROUNDS),
    })
    return n


def write_instances(out: Path, count: int, resolution: int, seed: int) -> int:
    rng = random.Random(seed)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    backgrounds = list(BACKGROUNDS)
    for i in range(count):
        scene = random_scene(rng, SUBJECT[0], SUBJECT[1], backgrounds[i % len(backgrounds)], resolution,
                             min_frac=0.45, max_frac=0.7)
        atomic.save_image(render(scene, resolution), out / f"{i:02d}.png", optimize=True)
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=data_dir(), help="parent folder (default: the project's data/)")
    ap.add_argument("--per-caption", type=int, default=6, help="images per training caption")
    ap.add_argument("--instances", type=int, default=10, help="DreamBooth instance images")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    n = write_text2image(args.out / "shapes", args.per_caption, args.resolution, args.seed)
    k = write_instances(args.out / "dreambooth" / SUBJECT_DIR, args.instances, args.resolution, args.seed + 1)
    print(f"wrote {n} captioned images to {args.out / 'shapes'} and {k} instance images to "
          f"{args.out / 'dreambooth' / SUBJECT_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
