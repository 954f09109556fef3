"""`sdstudio train CONFIG.toml [--FIELD VALUE ...] [--resume RUN_DIR]`."""

from __future__ import annotations

import argparse
import contextlib
import gc
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train a LoRA from a TOML config",
        description="Train a LoRA. Any config field can be given as --FIELD VALUE and overrides the file "
                    "(e.g. --max_train_steps 200 --learning_rate 5e-5). Ctrl-C, SIGTERM or SIGHUP save a "
                    "checkpoint and stop within seconds (a second one stops at once).",
    )
    p.add_argument("config", nargs="?",
                   help="TOML config file, or a shipped config's name such as demo-dreambooth (`sdstudio configs`)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    p.add_argument("--quiet", action="store_true", help="print only checkpoints, samples and the result")
    p.add_argument("--detach", action="store_true",
                   help="train in the background (survives logout and dropped SSH); prints the run directory "
                        "and returns; output goes to RUN_DIR/logs/trainer.log")
    p.add_argument("--force", action="store_true",
                   help="with --resume: resume although the dataset or base model changed (recorded in run.toml)")
    p.add_argument("--estimate", action="store_true",
                   help="print the memory estimate (accelerator, host RAM, each checkpoint's disk) and exit "
                        "without training")
    p.set_defaults(func=run)


def split_argv(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Separate `train`'s own options from `--field value` overrides (argparse would take an
    override's value for the positional config)."""
    own: dict[str, Any] = {"config": None, "resume": None, "quiet": False, "detach": False, "force": False,
                           "estimate": False}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("--quiet", "--detach", "--force", "--estimate"):
            own[tok[2:]] = True
        elif tok == "--resume" or tok.startswith("--resume="):
            if "=" in tok:
                own["resume"] = tok.split("=", 1)[1]
            elif i + 1 < len(argv):
                own["resume"] = argv[i + 1]
                i += 1
            else:
                raise SdstudioError("--resume needs a run directory")
        elif tok.startswith("--"):
            rest.append(tok)
            if "=" not in tok and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                rest.append(argv[i + 1])
                i += 1
        elif own["config"] is None:
            own["config"] = tok
        else:
            raise SdstudioError(f"unexpected argument {tok!r}: config overrides look like --field value")
        i += 1
    return own, rest


def parse_overrides(extra: list[str]) -> dict[str, Any]:
    """`--name value` pairs (a bare `--flag` is true); dashes and underscores both accepted."""
    from sdstudio.core.config import parse_cli_value

    out: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--"):
            raise SdstudioError(f"unexpected argument {token!r}: config overrides look like --field value")
        name, _, inline = token[2:].partition("=")
        name = name.replace("-", "_")
        if inline:
            value: str | None = inline
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            value = extra[i + 1]
            i += 1
        else:
            value = None
        out[name] = parse_cli_value(name, value)
        i += 1
    return out


class _Printer:
    """Prints trainer events as compact lines."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = None

    def __call__(self, event: Any) -> None:
        from sdstudio.core import events as ev

        if isinstance(event, ev.StepEvent):
            if not self.quiet:
                mem = f" mem {event.gpu_mem_gib:.2f} GiB" if event.gpu_mem_gib is not None else ""
                print(f"step {event.step}/{event.total} loss {event.loss:.4f} lr {event.lr:.2e} "
                      f"{event.images_per_s:.1f} img/s{mem}", flush=True)
        elif isinstance(event, ev.SampleEvent):
            print(f"samples at step {event.step}: {len(event.paths)} images in {event.paths[0].parent}" if event.paths
                  else f"samples at step {event.step}", flush=True)
        elif isinstance(event, ev.CheckpointEvent):
            print(f"checkpoint: {event.path}", flush=True)
        elif isinstance(event, ev.LogEvent):
            print(("warning: " if event.level == "warning" else "") + event.message, flush=True)
        elif isinstance(event, ev.FinishedEvent):
            word = "stopped" if event.stopped else "finished"
            print(f"{word} at step {event.step}: {event.run_dir}", flush=True)
        elif isinstance(event, ev.FailedEvent):
            where = f" (at step {event.step})" if event.step else ""
            print(f"error: {event.message}{where}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.config import load_config

    own, rest = split_argv(args.train_argv)
    args.config, args.resume, args.quiet = own["config"], own["resume"], own["quiet"]
    if own["force"] and not args.resume:
        raise SdstudioError("--force only applies to --resume RUN_DIR")
    overrides = parse_overrides(rest)
    if own["detach"] and not own["estimate"]:  # --estimate never trains, also with --detach
        from sdstudio.core.runs.detach import start_detached

        run_dir, pid, started = start_detached(args.config, args.resume, rest, overrides, quiet=args.quiet,
                                               force=own["force"])
        print(run_dir, flush=True)
        if not started:
            print(f"warning: the background trainer (pid {pid}) has not taken the run yet; it goes on starting",
                  file=sys.stderr, flush=True)
        print(f"training in the background (pid {pid}); log: {run_dir / 'logs' / 'trainer.log'}\n"
              f"follow it with `sdstudio --run {run_dir}` or `sdstudio runs`; stop it with `sdstudio stop {run_dir}`",
              file=sys.stderr, flush=True)
        return 0
    if args.resume:
        from sdstudio.core.runs.naming import resume_config

        cfg = resume_config(args.resume, overrides)
    else:
        if not args.config and not overrides:
            raise SdstudioError("give a config file or a shipped config's name (e.g. demo-dreambooth; "
                                "`sdstudio configs` lists them), --FIELD VALUE settings, or --resume RUN_DIR")
        cfg = load_config(args.config, overrides)
        if cfg.run_name is None and cfg.output_dir is None:
            from sdstudio.core.runs.naming import default_run_name

            cfg.run_name = default_run_name(cfg, Path(args.config).stem if args.config else None)
    if own["estimate"]:
        return print_estimate(cfg)
    from sdstudio.core.events import TrainerControl
    from sdstudio.core.runs import control as run_control
    from sdstudio.core.runs import detach
    from sdstudio.core.runs.lock import RunLockedError
    from sdstudio.core.training.launch import train_with_commands

    printer = _Printer(args.quiet)
    control = TrainerControl()
    run_control.install_signal_handlers(control)  # sample/save by SIGUSR1/SIGUSR2: the fallback route
    if detach.in_detached_child():
        detach.ignore_hangup()
    try:
        with stop_on_signals(control) as received:  # SIGINT/SIGTERM/SIGHUP: stop with a checkpoint
            try:
                train_with_commands(cfg, on_event=printer, control=control, resume=args.resume,
                                    signals=True, force=own["force"])
            finally:
                # The interpreter's last garbage collection walks the whole model graph (about 4 s
                # for a tiny model); what is left is freed with the process, so a stop exits at once.
                gc.freeze()
    except KeyboardInterrupt:
        return 130
    except RunLockedError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 3
    except SdstudioError:
        return 2  # already printed from the FailedEvent
    except Exception:  # noqa: BLE001 - already reported by the FailedEvent
        return 1
    return 128 + received[0] if received else 0  # stopped by a signal: say which, as a shell would


def print_estimate(cfg: Any) -> int:
    """`--estimate`: the estimate the trainer would log, for the device it would use, with this
    process's RSS after importing the training libraries as the baseline; then each term."""
    import torch

    from sdstudio.core.training.memory_estimate import breakdown, estimate_config
    from sdstudio.core.training.memory_watch import process_baseline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    est = estimate_config(cfg, device, process_baseline())
    print(est.line())
    print("\n".join(breakdown(est)))
    return 0


@contextlib.contextmanager
def stop_on_signals(control: Any) -> Iterator[list[int]]:
    """SIGINT, SIGTERM and SIGHUP ask the trainer to stop (it saves a checkpoint and marks the
    run stopped, within ~2 s in any phase); a second signal raises KeyboardInterrupt at once.
    A SIGHUP that is ignored (nohup) stays ignored. Yields the signals received."""
    received: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        control.stop_from_signal()  # ends model loading at once; elsewhere the trainer stops at its next check

    wanted = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {}
    for sig in wanted:
        if signal.getsignal(sig) == signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
