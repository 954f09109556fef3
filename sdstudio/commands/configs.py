"""`sdstudio configs [list]` and `sdstudio configs copy NAME [DEST] [--overwrite]`: the shipped configs."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "configs", help="list the shipped training configs; copy one to edit",
        description="The training configs sdstudio ships. Any of them trains by name from any folder "
                    "(`sdstudio train demo-dreambooth`); `configs copy NAME [DEST]` writes an editable copy whose "
                    "relative paths are made absolute (the installed sample data; written folders in the home).")
    p.add_argument("action", nargs="?", choices=("list", "copy"), default="list")
    p.add_argument("name", nargs="?", help="copy: the shipped config's name (e.g. demo-dreambooth)")
    p.add_argument("dest", nargs="?", help="copy: a .toml file or a folder (default: NAME.toml here)")
    p.add_argument("--overwrite", action="store_true", help="copy: replace an existing file")
    p.add_argument("--json", action="store_true", help="list: one JSON array, for scripts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.config_copy import copy_config
    from sdstudio.core.shipped_configs import shipped_configs

    if args.action == "copy":
        if not args.name:
            raise SdstudioError("configs copy needs a NAME (`sdstudio configs` lists them)")
        target = copy_config(args.name, args.dest, overwrite=args.overwrite)
        print(target)
        return 0
    if args.name or args.dest:
        raise SdstudioError("`sdstudio configs` lists; to copy one: `sdstudio configs copy NAME [DEST]`")
    configs = shipped_configs()
    if args.json:
        print(json.dumps([{"name": c.name, "path": str(c.path), "summary": c.summary} for c in configs], indent=2))
        return 0
    width = max((len(c.name) for c in configs), default=0)
    for c in configs:
        print(f"{c.name:<{width}}  {c.summary}")
    if configs:
        print(f"\n(in {configs[0].path.parent}; `sdstudio train NAME` trains one, "
              "`sdstudio configs copy NAME [DEST]` writes a copy to edit)")
    return 0
