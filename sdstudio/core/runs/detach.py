"""Start `sdstudio` as a background process that outlives the terminal and the SSH session.

`sdstudio train CONFIG --detach` (and the studio, and the queue runner) decide the run directory
here, in the parent, so it can be printed at once, and hand it to the child as `--run_name` (or
the config's output_dir / the resumed run); the child is an ordinary `sdstudio train`.

The child gets its own session and process group (no controlling terminal, so a dropped SSH
connection sends it no SIGHUP), stdin from /dev/null and its output appended to a log file.
`subprocess.Popen(start_new_session=True)` does the setsid; nothing here is hand-rolled
daemonising beyond that.

`start_detached` returns only once the child holds the run's lock and has written status
"starting": from that moment every observer (a studio opened 0 s later, `sdstudio runs`,
`sdstudio stop`) sees a live run, never the gap while the child's interpreter starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError

LOG_NAME = "trainer.log"
START_WAIT_S = 120.0  # how long `--detach` waits for its child to take the run (a loaded machine)
DETACHED_ENV = "SDSTUDIO_DETACHED"  # set in the child: it ignores SIGHUP and knows where it prints


def spawn(argv: list[str], log_file: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
          extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Run `python -m sdstudio ARGV` detached; returns at once with the child's Popen."""
    log = Path(log_file)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **{DETACHED_ENV: "1", "PYTHONUNBUFFERED": "1"}, **(extra_env or {}))
    for var in ("SSH_TTY",):  # the child has no terminal; let nothing think it has one
        env.pop(var, None)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "sdstudio", *argv], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                cwd=os.fspath(cwd) if cwd else None, env=env)


def in_detached_child() -> bool:
    return os.environ.get(DETACHED_ENV) == "1"


def ignore_hangup() -> None:
    """A detached process ignores SIGHUP even if someone sends it one by hand (nohup semantics)."""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def on_ssh_login() -> bool:
    """True in a remote login: OpenSSH sets SSH_CONNECTION (and SSH_TTY with a terminal)."""
    return bool(os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"))



def child_argv(config: str | None, resume: str | None, rest: list[str], run_name: str | None,
               quiet: bool, force: bool = False) -> list[str]:
    """The `sdstudio` arguments of the background trainer (paths made absolute)."""
    argv = ["train"]
    if resume:
        argv += ["--resume", str(Path(resume).resolve())]
    elif config:
        argv.append(str(Path(config).resolve()))
    argv += rest
    if run_name and not resume:
        argv += ["--run_name", run_name]
    if quiet:
        argv.append("--quiet")
    if force and resume:
        argv.append("--force")
    return argv


def plan_run(config: str | None, resume: str | None, overrides: dict[str, Any]) -> tuple[Path, str | None]:
    """(run directory, run name to pass on) after checking the config and that the run is free."""
    from sdstudio.core.runs import lock as run_lock
    from sdstudio.core.config import load_config
    from sdstudio.core.runs.naming import run_path_for
    from sdstudio.core.runs.run_dir import RunDir

    if resume:
        from sdstudio.core.runs.naming import resume_config

        resume_config(resume, overrides)  # refuses a folder that is not a run, or a bad override
        path = Path(resume).resolve()
        name = None
    else:
        if not config and not overrides:
            raise SdstudioError("give a config file (e.g. data/configs/demo-dreambooth.toml), --FIELD VALUE "
                                "settings, or --resume RUN_DIR")
        cfg = load_config(config, overrides)
        if cfg.run_name is None and cfg.output_dir is None:
            from sdstudio.core.runs.naming import default_run_name

            cfg.run_name = default_run_name(cfg, Path(config).stem if config else None)
        path = run_path_for(cfg).resolve()
        name = cfg.run_name if not cfg.output_dir else None
        if RunDir(path).exists() and RunDir(path).checkpoints():
            raise SdstudioError(f"{path} already holds a run with checkpoints; resume it with "
                                f"`sdstudio train --resume {path} --detach` or choose another run_name")
    owner = run_lock.holder(path)
    if owner is not None:
        raise run_lock.RunLockedError(f"{path} is already being trained by process {int(owner.get('pid') or 0)}; "
                                      f"stop it first (`sdstudio stop {path}`)")
    return path, name


def wait_started(run_dir: Path, proc: subprocess.Popen[bytes], log: Path, log_start: int = 0,
                 timeout: float = START_WAIT_S) -> bool:
    """Wait until `proc` holds the run's lock and wrote its status; False if it is still starting
    after `timeout`. A child that exits first raises SdstudioError with the end of its log."""
    from sdstudio.core.runs.lock import holder
    from sdstudio.core.runs.run_dir import RunDir

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owner = holder(run_dir)
        if owner and int(owner.get("pid") or 0) == proc.pid and RunDir(run_dir).status().get("pid") == proc.pid:
            return True
        if proc.poll() is not None:
            try:
                with open(log, "rb") as fh:
                    fh.seek(log_start)
                    tail = fh.read().decode("utf-8", "replace").strip().splitlines()[-12:]
            except OSError:
                tail = []
            said = ("\n" + "\n".join(tail)) if tail else ""
            raise SdstudioError(f"the background trainer exited with code {proc.returncode} before it started; "
                                f"see {log}{said}")
        time.sleep(0.05)
    return False


def start_detached(config: str | None, resume: str | None, rest: list[str], overrides: dict[str, Any],
                   quiet: bool = False, force: bool = False) -> tuple[Path, int, bool]:
    """Start the background trainer and wait until it holds the run (see `wait_started`); returns
    (run directory, pid, whether it had started within START_WAIT_S)."""
    path, name = plan_run(config, resume, overrides)
    log = path / "logs" / LOG_NAME
    log_start = log.stat().st_size if log.exists() else 0
    proc = spawn(child_argv(config, resume, rest, name, quiet, force), log, cwd=os.getcwd())
    return path, proc.pid, wait_started(path, proc, log, log_start)
