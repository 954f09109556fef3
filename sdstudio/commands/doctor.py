"""`sdstudio doctor [--json] [--no-demo]`: one screen of facts about this machine, a verdict on each,
and a non-zero exit when something blocks training."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "info": "    "}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor", help="check this machine: Python, torch, CUDA, GPUs, libraries, disk, folders, terminal images",
        description="One line per fact with a verdict (ok, warn, FAIL). Exits 1 when something blocks training, "
                    "and says what to do.")
    p.add_argument("--json", action="store_true", help="the same facts as one JSON object, for scripts")
    p.add_argument("--no-demo", action="store_true", help="skip loading the demo model (about 2 s)")
    p.set_defaults(func=run)


def image_support() -> Any:
    """What the studio would draw pictures with in this terminal (the TUI's own detection)."""
    from sdstudio.core.doctor.check import INFO, OK, WARN, Check

    try:
        from sdstudio.tui import images
        from sdstudio.tui.settings import load_settings

        choice = images.choose_renderer(None, load_settings().images)
        if not images.terminal_usable():
            return Check("terminal images", INFO, f"not probed: the output is not a terminal (setting: {choice})")
        renderer = images.init_images(choice)
    except Exception as exc:  # noqa: BLE001 - never blocks training
        return Check("terminal images", WARN, f"could not be detected ({exc})",
                     "force one with --images or $SDSTUDIO_IMAGES (sixel, kitty, halfcell, unicode)")
    names = {"sixel": "Sixel graphics", "kitty": "Kitty graphics", "halfcell": "half-cell blocks (colour)",
             "unicode": "Unicode blocks", "text": "none (text placeholders)"}
    status = OK if renderer in ("sixel", "kitty", "halfcell") else WARN
    advice = "" if status == OK else "use a terminal with Sixel or Kitty graphics (WezTerm, kitty, foot) for sharp previews"
    return Check("terminal images", status, f"{names.get(renderer, renderer)} ({'auto-detected' if choice == 'auto' else 'forced'})",
                 advice)


def _home() -> str | None:
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.paths import home

    try:
        return str(home())
    except SdstudioError:
        return None


def run(args: argparse.Namespace) -> int:
    from sdstudio import __version__
    from sdstudio.core.doctor import blocking, run_checks

    checks = run_checks(load_demo=not args.no_demo)
    checks.append(image_support())
    problems = blocking(checks)
    if args.json:
        print(json.dumps({"sdstudio": __version__, "ok": not problems, "home": _home(), "blocking": [c.name for c in problems],
                          "checks": [c.to_json() for c in checks]}, indent=2, ensure_ascii=False))
        return 1 if problems else 0
    width = max(len(c.name) for c in checks)
    print(f"sdstudio {__version__} doctor")
    for c in checks:
        print(f"  {MARK.get(c.status, c.status)}  {c.name:<{width}}  {c.value}")
        if c.advice and c.status in ("warn", "fail"):
            print(f"        {'':<{width}}  → {c.advice}")
    if problems:
        print(f"\nblocked: {len(problems)} problem(s) stop training ({', '.join(c.name for c in problems)}); "
              "fix the lines marked FAIL", file=sys.stdout)
        return 1
    print("\nready to train" + (" (see the warnings above)" if any(c.status == "warn" for c in checks) else ""))
    return 0
