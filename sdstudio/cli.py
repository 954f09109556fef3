"""`sdstudio`: no arguments opens the studio; subcommands are the screens' headless twins.

Each subcommand lives in `sdstudio/commands/<name>.py` with `register(subparsers)`; those
modules import only argparse-level things so that `sdstudio --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from sdstudio import __version__
from sdstudio.core.errors import SdstudioError
from sdstudio.tui.settings import RENDERERS

COMMANDS = ("train", "dataset", "caption", "export", "convert", "generate", "merge", "score", "runs", "stop", "sample",
            "save", "queue", "configs", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdstudio",
        description="Fine-tune Stable Diffusion with LoRA from a terminal. Without a command, opens the studio.",
    )
    parser.add_argument("--version", action="version", version=f"sdstudio {__version__}")
    parser.add_argument("--run", metavar="RUN_DIR", help="open this run on the Checkpoints screen")
    parser.add_argument("--images", choices=RENDERERS, help="terminal image renderer (default: auto; env SDSTUDIO_IMAGES)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"sdstudio.commands.{name}")
        except Exception as exc:  # a broken install or a bad edit: say which command and why
            raise SystemExit(f"sdstudio: cannot load the '{name}' command (sdstudio.commands.{name}): "
                             f"{type(exc).__name__}: {exc}") from exc
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Library advisories (e.g. transformers on a missing torchvision) are noise to a user.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    if argv and argv[0] == "train" and not {"-h", "--help"} & set(argv):
        # `train` takes free-form `--field value` overrides: parse those by hand.
        args = argparse.Namespace(command="train", train_argv=argv[1:])
        from sdstudio.commands import train as train_command

        args.func = train_command.run
        extra: list[str] = []
    else:
        args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        if args.command is None:
            from sdstudio.tui.app import run_app

            return run_app(run_dir=args.run, images=args.images) or 0
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away is handled below
        return code
    except BrokenPipeError:
        # the reader left early (`sdstudio runs | head -3`): stop quietly, as `ls | head` does; what is
        # still buffered goes nowhere instead of raising again when Python flushes at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # SIGPIPE
    except SdstudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
