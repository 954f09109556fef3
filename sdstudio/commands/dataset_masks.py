"""`sdstudio dataset mask` (make subject masks with CLIPSeg or the demo masker) and `sdstudio
dataset crop` (crop boxes to the subject); both write by default (--dry-run shows what would
change) and log every pass so --undo restores the folder."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from sdstudio.commands.progress_line import print_undone


def register(dsub: Any) -> None:
    m = dsub.add_parser("mask", help="make subject masks (NAME-mask.png) with CLIPSeg or the demo masker",
                        description="Mask the subject a prompt names in every image. Writes NAME-mask.png beside "
                                    "each image (or MASK_DIR/NAME.png), atomically; each pass is logged in "
                                    "DIR/masks.log.jsonl and --undo restores the folder as it was.")
    m.add_argument("dir", help="dataset folder")
    m.add_argument("--prompt", help="what the subject is, e.g. \"the cat\"")
    m.add_argument("--model", help="'demo' (the demo world), or clipseg:PATH|ID (a CLIPSeg folder or hub id, "
                                   "e.g. clipseg:CIDAS/clipseg-rd64-refined)")
    m.add_argument("--mode", choices=("fill", "replace"), default="fill",
                   help="fill (default): only images without a mask; replace: also remake existing masks")
    m.add_argument("--threshold", type=float, default=0.5,
                   help="white where the model is at least this sure (0-1, default 0.5; 0 keeps its soft mask)")
    m.add_argument("--expand", type=int, default=0, help="grow the subject by this many pixels (default 0)")
    m.add_argument("--blur", type=float, default=0.0, help="soften the edge: Gaussian blur radius in pixels (default 0)")
    m.add_argument("--mask-dir", help="write MASK_DIR/NAME.png instead of NAME-mask.png (the config's mask_dir)")
    m.add_argument("--dry-run", action="store_true", help="mask and report, write nothing")
    m.add_argument("--json", action="store_true", help="print the result as JSON")
    m.add_argument("--allow-download", "--download", dest="download", action="store_true",
                   help="allow downloading a CLIPSeg hub id (default: local files and the local cache only)")
    m.add_argument("--revision", default=None, help="hub revision (commit, tag, branch or refs/pr/N) of a CLIPSeg id")
    m.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    m.add_argument("--undo", action="store_true", help="undo the last masking pass of DIR, byte for byte")
    m.add_argument("--force", action="store_true", help="with --undo: also when masks were edited since")
    m.set_defaults(func=run_mask)

    c = dsub.add_parser("crop", help="crop boxes to each image's subject (from its mask)",
                        description="Propose a crop box per image: the mask's subject box plus padding, at a fixed "
                                    "aspect, the image's bucket's, or square. Boxes go in metadata.jsonl rows "
                                    "(\"crop\": [x, y, w, h]) or crops.jsonl; each pass is logged in "
                                    "DIR/crops.log.jsonl and --undo restores the file.")
    c.add_argument("dir", help="dataset folder")
    action = c.add_mutually_exclusive_group(required=True)
    action.add_argument("--to-subject", action="store_true", help="propose boxes from the masks")
    action.add_argument("--clear", action="store_true", help="remove every crop box of the folder")
    action.add_argument("--undo", action="store_true", help="undo the last crop pass of DIR")
    shape = c.add_mutually_exclusive_group()
    shape.add_argument("--aspect", default=None, help="width:height of every box, e.g. 1:1 (default) or 3:4")
    shape.add_argument("--bucket", action="store_true", help="each box at the aspect of the image's bucket")
    c.add_argument("--resolution", type=int, default=512, help="with --bucket: the bucket table's resolution (512)")
    c.add_argument("--bucket-reso-steps", type=int, default=64, help="with --bucket: bucket sides' step (64)")
    c.add_argument("--padding", type=float, default=0.1,
                   help="added on every side, as a share of the subject's larger side (default 0.1)")
    c.add_argument("--mode", choices=("fill", "replace"), default="fill",
                   help="fill (default): only images without a box; replace: every image with a mask")
    c.add_argument("--mask-dir", help="also read masks from MASK_DIR/NAME.png (the config's mask_dir)")
    c.add_argument("--dry-run", action="store_true", help="print the boxes, write nothing")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.add_argument("--force", action="store_true", help="with --undo: also when the crops file was edited since")
    c.set_defaults(func=run_crop)


def run_mask(args: argparse.Namespace) -> int:
    from sdstudio.commands.progress_line import progress_printer
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.masks import making
    from sdstudio.core.masks.maskers import make_masker

    if args.undo:
        return print_undone("masking", making.undo(args.dir, force=args.force), args.json)
    if not args.model:
        raise SdstudioError("--model is required: 'demo' or clipseg:PATH|ID (e.g. clipseg:CIDAS/clipseg-rd64-refined); or --undo")
    if not args.prompt or not args.prompt.strip():
        raise SdstudioError("--prompt is required: what the subject is, e.g. --prompt \"the cat\"")
    shaping = making.Shaping(args.threshold, args.expand, args.blur)
    plan = making.plan(args.dir, args.mode, args.mask_dir)
    masker = make_masker(args.model, allow_download=args.download, device=args.device, revision=args.revision)
    start = time.perf_counter()
    made = making.run(plan, masker, args.prompt, shaping, progress=progress_printer(args.json))
    info = {"model": masker.name, "revision": getattr(masker, "revision", None), "prompt": args.prompt,
            "threshold": shaping.threshold, "expand": shaping.expand, "blur": shaping.blur}
    results: list[tuple[str, float]] = []  # (file name, coverage): the masks themselves are not kept

    def keep(items: Any) -> Any:
        for item in items:
            results.append((item.file_name, item.coverage))
            yield item
    entry = None
    if args.dry_run:
        list(keep(made))
    else:
        entry = making.apply(plan, keep(made), info)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"dir": str(plan.root), "model": masker.name, "mode": plan.mode, "dry_run": args.dry_run,
                          "masked": len(results), "kept": plan.kept, "shadowed": plan.shadowed,
                          "unreadable": plan.unreadable, "seconds": round(seconds, 3),
                          "pass": entry["pass"] if entry else None,
                          "masks": [{"file_name": name, "mask": str(plan.target(name)), "coverage": round(cover, 4)}
                                    for name, cover in results]}, indent=2))
        return 0
    for name, cover in results[:20] if not args.dry_run else results:
        print(f"{name}: {cover * 100:5.1f} % -> {plan.target(name)}")
    for line in plan.shadowed + plan.unreadable:
        print(f"skipped {line}")
    print(f"{len(results)} images masked with {masker.name} in {seconds:.1f}s; {plan.kept} kept their mask "
          f"(mode {plan.mode}); {len(plan.shadowed) + len(plan.unreadable)} skipped")
    if args.dry_run:
        print("dry run: nothing written")
    elif entry:
        print(f"pass {entry['pass']} logged in masks.log.jsonl (undo: sdstudio dataset mask {args.dir} --undo)")
    else:
        print("nothing to write")
    return 0


def run_crop(args: argparse.Namespace) -> int:
    from sdstudio.core.masks import cropping

    if args.undo:
        return print_undone("crop", cropping.undo(args.dir, force=args.force), args.json)
    if args.clear:
        plan, info = cropping.clear(args.dir), {"action": "clear"}
    else:
        aspect = None if args.bucket else cropping.parse_aspect(args.aspect or "1:1")
        plan = cropping.propose(args.dir, aspect, args.padding, args.mode, args.mask_dir, args.resolution,
                                args.bucket_reso_steps)
        info = {"action": "to-subject", "aspect": "bucket" if args.bucket else (args.aspect or "1:1"),
                "padding": args.padding, "mode": args.mode}
    entry = None if args.dry_run else cropping.apply(plan, info)
    changed = [p for p in plan.proposals if p.changed]
    if args.json:
        print(json.dumps({"dir": str(plan.root), "dry_run": args.dry_run, "changed": len(changed), "kept": plan.kept,
                          "skipped": plan.skipped, "pass": entry["pass"] if entry else None,
                          "crops": [{"file_name": p.file_name, "old": p.old, "new": p.new} for p in changed]}, indent=2))
        return 0
    for p in changed:
        print(f"{p.file_name}: {list(p.old) if p.old else '(none)'} -> {list(p.new) if p.new else '(none)'}")
    for line in plan.skipped:
        print(f"skipped {line}")
    print(f"{len(changed)} crop boxes changed, {plan.kept} kept (mode {args.mode}), {len(plan.skipped)} skipped")
    if args.dry_run:
        print("dry run: nothing written")
    elif entry:
        print(f"wrote {entry['file']}; pass {entry['pass']} logged in crops.log.jsonl "
              f"(undo: sdstudio dataset crop {args.dir} --undo)")
    else:
        print("nothing to write")
    return 0
