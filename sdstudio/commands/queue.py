"""`sdstudio queue add CONFIG [--FIELD VALUE ...]` and `sdstudio queue [list|remove N|clear]`.

Queued runs are trained one after another by one background runner (`sdstudio queue run`, started
on demand and gone when the queue is empty); a failed run is recorded and the next one starts.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sdstudio.core.errors import SdstudioError

USAGE = "sdstudio queue [list] | add CONFIG [--FIELD VALUE ...] | remove N | clear | start | run"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "queue", help="queue runs to train one after another in the background",
        usage=USAGE,
        description="Queue the night's runs. `add` checks the config now and freezes it (overrides as in `train`); "
                    "one background runner trains the entries in order, survives logout, and a failed run does "
                    "not stop the queue. `list` (the default) shows every entry with its number; `remove N` "
                    "takes one off; `clear` removes all but a running one; `start` starts the background "
                    "runner (after a reboot: it resumes the entry that was cut off); `run` is the runner "
                    "itself, in the foreground.")
    p.add_argument("action", nargs="?", default="list", choices=("list", "add", "remove", "clear", "start", "run"))
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _when(t: float | None) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(t)) if t else "-"


def format_queue(items: list[Any], runner: bool = True) -> str:
    if not items:
        return "the queue is empty"
    lines = []
    for n, item in enumerate(items, 1):
        extra = f"  error: {item.error}" if item.error else ""
        state = item.state
        if state == "running" and not runner:
            state, extra = "cut off", "  (the runner is gone: `sdstudio queue start` resumes it)"
        lines.append(f"{n:>3}  {state:<9} {item.run_name or item.run_dir}  ({item.label}, {item.total} steps, "
                     f"added {_when(item.added)}){extra}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from sdstudio.core.runs import queue as run_queue
    from sdstudio.core.paths import runs_root

    root = runs_root()
    action, rest = args.action, list(args.rest or [])
    if action == "add":
        from sdstudio.commands.train import parse_overrides, split_argv
        from sdstudio.core.runs.queue_runner import ensure_runner

        own, override_argv = split_argv(rest)
        item = run_queue.add(root, own["config"], parse_overrides(override_argv), start_runner=ensure_runner)
        position = [i.id for i in run_queue.load(root).items if i.state in (run_queue.WAITING, run_queue.RUNNING)]
        print(f"queued {item.run_name or item.run_dir} as entry {len(run_queue.load(root).items)} "
              f"({len(position)} waiting or running); run folder: {item.run_dir}")
        return 0
    if action == "remove":
        if len(rest) != 1 or not rest[0].isdigit():
            raise SdstudioError("usage: sdstudio queue remove N (N as `sdstudio queue list` numbers it)")
        item = run_queue.remove(root, int(rest[0]))
        print(f"removed {item.run_name or item.run_dir}")
        return 0
    if rest:
        raise SdstudioError(f"unexpected arguments {' '.join(rest)!r}; usage: {USAGE}")
    if action == "clear":
        print(f"removed {run_queue.clear(root)} entries")
        return 0
    if action == "start":
        from sdstudio.core.runs.queue_runner import ensure_runner

        started = ensure_runner(root)
        print("queue runner started" if started else "a queue runner is already active")
        return 0
    if action == "run":
        from sdstudio.core.runs.detach import ignore_hangup, in_detached_child
        from sdstudio.core.runs.queue_runner import run_queue_loop

        if in_detached_child():
            ignore_hangup()
        return run_queue_loop(root)
    from sdstudio.core.runs.queue_runner import runner_active

    active = runner_active(root)
    print(format_queue(run_queue.load(root).items, runner=active))
    print(f"runner: {'active' if active else 'not running (starts when something is queued; or `sdstudio queue start`)'}")
    return 0
