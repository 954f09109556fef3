"""Captioning speed (images/s) of a captioner on a caption-less copy of the sample set, and, for the
demo captioner, how often it writes exactly the shipped caption.

    python benchmarks/caption_speed.py                          # --model demo, all 360 images
    python benchmarks/caption_speed.py --model florence-community/Florence-2-base --batch-size 16 --images 256

The copy lives in a temporary folder; nothing in data/ is written. The model loads as
`sdstudio caption` loads it (local files only, GPU in bf16 when there is one); loading time is
printed apart from captioning time, and the first batch (warm-up) is not timed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--images", type=int, default=0, help="caption only the first N images (default: all)")
    ap.add_argument("--prompt", default=None)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)

    from sdstudio.core.captions import runner
    from sdstudio.core.captions.compose import Style
    from sdstudio.core.paths import data_dir
    from sdstudio.demo.captioner import open_captioner

    source = data_dir() / "shapes"
    shipped = {r["file_name"]: r["text"] for r in map(json.loads, (source / "metadata.jsonl").read_text().splitlines())}
    names = sorted(shipped)[: args.images or None]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shapes"
        folder.mkdir()
        for name in names:
            shutil.copy(source / name, folder / name)
        start = time.perf_counter()
        captioner = open_captioner(args.model, device=args.device)
        loaded = time.perf_counter() - start
        plan = runner.plan(folder, Style())
        warm = runner.Plan(plan.root, plan.store, plan.todo[: args.batch_size], 0)
        runner.run(warm, captioner, Style(), args.prompt, args.batch_size)  # warm-up (kernels, caches)
        start = time.perf_counter()
        proposals = runner.run(plan, captioner, Style(), args.prompt, args.batch_size)
        seconds = time.perf_counter() - start
    exact = sum(p.new == shipped[p.file_name] for p in proposals) / max(1, len(proposals))
    device = getattr(captioner, "device", "cpu")
    print(json.dumps({"model": args.model, "device": str(device), "batch_size": args.batch_size, "images": len(proposals),
                      "load_s": round(loaded, 2), "caption_s": round(seconds, 2),
                      "images_per_s": round(len(proposals) / seconds, 2), "exact_match_shipped": round(exact, 4)}))
    for p in proposals[:3]:
        print(f"  {p.file_name}: {p.new}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
