"""`sdstudio dataset check DIR [--json]`: every file's verdict, with the reason, and each image's mask
coverage and crop box; `dataset mask` and `dataset crop` live in commands/dataset_masks.py."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("dataset", help="check a dataset folder, make subject masks, crop to the subject")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    c = dsub.add_parser("check", help="decode every file and report problems per file")
    c.add_argument("dir", help="dataset folder (captioned, or DreamBooth instance/class images)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--mask-dir", default=None, help="also look for masks as MASK_DIR/NAME.png (the config's mask_dir)")
    c.add_argument("--resolution", type=int, default=None,
                   help="warn about images smaller than this; the bucket table's resolution (default 512)")
    c.add_argument("--bucket-reso-steps", type=int, default=64, help="bucket sides are multiples of this (default 64)")
    c.add_argument("--max-upscale", type=float, default=2.0,
                   help="images needing more upscale than this to cover their bucket are too small (default 2)")
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--captions", dest="captions", action="store_const", const=True, default=None,
                      help="require a caption for every image (text-to-image)")
    mode.add_argument("--no-captions", dest="captions", action="store_const", const=False,
                      help="ignore captions (DreamBooth folders)")
    c.set_defaults(func=run)
    from sdstudio.commands import dataset_masks

    dataset_masks.register(dsub)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.dataset import BAD, WARN, check_dataset
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.masks.report import format_lines
    from sdstudio.core.training import buckets as bk

    report = check_dataset(args.dir, captions=args.captions, resolution=args.resolution, masks=True,
                           mask_dir=args.mask_dir)
    resolution, step = args.resolution or 512, args.bucket_reso_steps
    if step < 8 or step % 8 or resolution % step:
        raise SdstudioError(f"--bucket-reso-steps {step}: must be a multiple of 8 that divides the resolution ({resolution})")
    placed = bk.place_files(report.usable, resolution, step, args.max_upscale)
    if args.json:
        data = report.to_json()
        data["buckets"] = {"resolution": resolution, "step": step, "max_upscale": args.max_upscale,
                           "counts": [{"bucket": f"{w}x{h}", "images": n}
                                      for (w, h), n in bk.bucket_counts(p for p, why in placed.values() if not why)],
                           "too_small": sum(why is not None for _, why in placed.values())}
        for row in data["files"]:
            if row["name"] in placed:
                p, why = placed[row["name"]]
                row["bucket"] = f"{p.bucket[0]}x{p.bucket[1]}"
                row["bucket_too_small"] = why
        print(json.dumps(data, indent=2, default=str))
        return 0 if report.usable else 1
    marks = {BAD: "BAD ", WARN: "warn"}
    width = max((len(f.name) for f in report.files), default=10)
    for f in report.files:
        size = f"{f.width}x{f.height}" if f.width else "-"
        bucket = ""
        if f.name in placed:
            p, why = placed[f.name]
            bucket = f"{p.bucket[0]}x{p.bucket[1]}" + ("!" if why else "")
        detail = f.reason or (f"\"{f.caption}\"" if f.caption else "")
        print(f"{marks.get(f.status, 'ok  ')}  {f.name:<{width}}  {size:>10}  {bucket:>10}  {detail}")
    s = report.summary()
    store = s["caption_store"] or "none (DreamBooth)"
    print(f"\n{s['usable_images']} usable images of {s['files']} files; {s['bad']} bad, {s['warnings']} warnings, "
          f"{s['duplicates']} duplicates, {s['missing_captions']} missing captions; captions: {store}; "
          f"sides {s['min_side']}-{s['max_side']} px (median {s['median_side']})")
    if not report.usable:
        from pathlib import Path

        from sdstudio.core.filetypes import IMAGE_SUFFIXES

        if any(Path(f.name).suffix.lower() in IMAGE_SUFFIXES for f in report.files):
            print(f"\n{args.dir}: no usable image (the reasons are above): fix or replace those files.")
        else:
            print(f"\n{args.dir}: no images, nothing to train on. Put pictures there "
                  f"({', '.join(sorted(IMAGE_SUFFIXES))}) and check again.")
        return 1
    ok = [p for p, why in placed.values() if not why]
    print("\n" + bk.format_table(ok, resolution, step, args.max_upscale, len(placed) - len(ok)))
    if len(ok) < len(placed):
        print(f"  ('!' after a bucket: too small for it at {resolution} px; skipped when training with enable_bucket)")
    print("\n" + "\n".join(format_lines(report.masks)))
    return 0 if report.usable else 1
