"""`sdstudio caption DIR --model NAME`: caption a dataset folder where it keeps its captions; `--undo` reverts a pass."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

STORE_CHOICES = {"metadata": "metadata.jsonl", "txt": ".txt", "caption": ".caption"}


def register(sub: Any) -> None:
    p = sub.add_parser("caption", help="caption a dataset folder (BLIP, Florence-2, Qwen2.5-VL or the demo captioner)",
                       description="Caption the images of a folder into its own caption store (metadata.jsonl, "
                                   ".txt or .caption). Every pass is logged in DIR/captions.log.jsonl; --undo "
                                   "restores the folder as it was before the last pass.")
    p.add_argument("dir", help="dataset folder")
    p.add_argument("--model", help="'demo', a local model folder, or a hub id in the local cache "
                                   "(e.g. florence-community/Florence-2-base)")
    p.add_argument("--mode", choices=("fill", "replace", "append"), default="fill",
                   help="fill (default): only images without a caption; replace: every image; append: after the old caption")
    p.add_argument("--trigger", default="", help="trigger word: put first, or in place of [trigger]")
    p.add_argument("--prefix", default="", help="text before each caption")
    p.add_argument("--suffix", default="", help="text after each caption")
    p.add_argument("--prompt", default=None, help="instruction for a chat model (Qwen2.5-VL); a task token for Florence-2")
    p.add_argument("--max-words", type=int, default=0, help="cut captions to this many words (default: no limit)")
    p.add_argument("--batch-size", type=int, default=8, help="images per generate call (default 8)")
    p.add_argument("--store", choices=tuple(STORE_CHOICES), default=None,
                   help="where a folder without captions gets them (default metadata); ignored when it has some")
    p.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--download", action="store_true", help="allow downloading the model (default: local files only)")
    p.add_argument("--revision", default=None, help="hub revision (commit, tag or branch) of the model")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--undo", action="store_true", help="undo the last captioning pass of DIR, byte for byte")
    p.add_argument("--force", action="store_true", help="with --undo: also when caption files were edited since")
    p.set_defaults(func=run)


def _undo(args: argparse.Namespace) -> int:
    from sdstudio.commands.progress_line import print_undone
    from sdstudio.core.captions import log

    entry = log.undo(args.dir, force=args.force)
    return print_undone("captioning", entry, args.json, f"{len(entry['changes'])} captions restored in")


def run(args: argparse.Namespace) -> int:
    if args.undo:
        return _undo(args)
    from sdstudio.commands.progress_line import progress_printer
    from sdstudio.core.captions import runner
    from sdstudio.core.captions.compose import Style
    from sdstudio.core.errors import SdstudioError
    from sdstudio.demo.captioner import open_captioner

    if not args.model:
        raise SdstudioError("--model is required: 'demo', a model folder or a cached hub id "
                            "(e.g. florence-community/Florence-2-base); or --undo")
    try:
        style = Style(args.mode, args.trigger, args.prefix, args.suffix, args.max_words)
    except ValueError as exc:
        raise SdstudioError(f"--max-words: {exc}") from None
    if args.batch_size < 1:
        raise SdstudioError(f"--batch-size {args.batch_size}: 1 or more")
    plan = runner.plan(args.dir, style, STORE_CHOICES.get(args.store or "", None))
    captioner = open_captioner(args.model, allow_download=args.download, revision=args.revision, device=args.device)
    start = time.perf_counter()
    proposals = runner.run(plan, captioner, style, args.prompt, args.batch_size, progress=progress_printer(args.json))
    seconds = time.perf_counter() - start
    rate = len(proposals) / seconds if seconds > 0 else 0.0
    entry = None if args.dry_run else runner.apply(plan, proposals, runner.provenance(captioner, style, args.prompt))
    changed = [p for p in proposals if p.changed]
    if args.json:
        print(json.dumps({"dir": str(plan.root), "model": captioner.name, "revision": captioner.revision,
                          "mode": style.mode, "store": plan.store, "dry_run": args.dry_run,
                          "captioned": len(proposals), "changed": len(changed), "kept": plan.kept,
                          "unreadable": plan.unreadable, "seconds": round(seconds, 3),
                          "images_per_s": round(rate, 2), "pass": entry["pass"] if entry else None,
                          "proposals": [{"file_name": p.file_name, "old": p.old, "new": p.new} for p in proposals]},
                         indent=2, ensure_ascii=False))
        return 0
    if args.dry_run or len(proposals) <= 20:
        for p in changed:
            old = f'"{p.old}"' if p.old else "(none)"
            print(f"{p.file_name}: {old} -> \"{p.new}\"")
    for line in plan.unreadable:
        print(f"skipped {line}")
    store = plan.store
    print(f"{len(proposals)} images captioned with {captioner.name} in {seconds:.1f}s ({rate:.1f} images/s); "
          f"{len(changed)} changed, {plan.kept} kept (mode {style.mode}); store: {store}")
    if args.dry_run:
        print("dry run: nothing written")
    elif entry:
        print(f"wrote {store}; pass {entry['pass']} logged in captions.log.jsonl "
              f"(undo: sdstudio caption {args.dir} --undo)")
    else:
        print("nothing to write")
    return 0
