"""`sdstudio dataset check DIR [--json]`: every file's verdict, with the reason."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("dataset", help="check a dataset folder")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    c = dsub.add_parser("check", help="decode every file and report problems per file")
    c.add_argument("dir", help="dataset folder (captioned, or DreamBooth instance/class images)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--resolution", type=int, default=None, help="warn about images smaller than this")
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--captions", dest="captions", action="store_const", const=True, default=None,
                      help="require a caption for every image (text-to-image)")
    mode.add_argument("--no-captions", dest="captions", action="store_const", const=False,
                      help="ignore captions (DreamBooth folders)")
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.dataset import BAD, WARN, check_dataset

    report = check_dataset(args.dir, captions=args.captions, resolution=args.resolution)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
        return 0 if report.usable else 1
    marks = {BAD: "BAD ", WARN: "warn"}
    width = max((len(f.name) for f in report.files), default=10)
    for f in report.files:
        size = f"{f.width}x{f.height}" if f.width else "-"
        detail = f.reason or (f"\"{f.caption}\"" if f.caption else "")
        print(f"{marks.get(f.status, 'ok  ')}  {f.name:<{width}}  {size:>10}  {detail}")
    s = report.summary()
    store = s["caption_store"] or "none (DreamBooth)"
    print(f"\n{s['usable_images']} usable images of {s['files']} files; {s['bad']} bad, {s['warnings']} warnings, "
          f"{s['duplicates']} duplicates, {s['missing_captions']} missing captions; captions: {store}; "
          f"sides {s['min_side']}-{s['max_side']} px (median {s['median_side']})")
    return 0 if report.usable else 1
