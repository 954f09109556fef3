"""A training run as the CLI and the studio start it: `trainer.train` holding the run's lock, with
the command reader (stop / sample / save from anywhere) beside it."""

from __future__ import annotations

import os
import time
from typing import Any

from sdstudio.core.events import EventCallback, LogEvent, TrainerControl
from sdstudio.core.io import atomic
from sdstudio.core.runs import lock as run_lock
from sdstudio.core.runs.control import STARTING, CommandReader, is_rank_zero
from sdstudio.core.runs.naming import run_path_for
from sdstudio.core.runs.run_dir import FAILED, RunDir


def train_with_commands(cfg: Any, on_event: EventCallback | None = None, control: TrainerControl | None = None,
                        resume: str | os.PathLike[str] | None = None, signals: bool = False,
                        force: bool = False) -> RunDir:
    """`trainer.train` holding the run's lock, with a command reader beside it.

    A second trainer of the same run is refused here, before anything in the folder is touched.
    The lock is taken and status "starting" written before torch is imported, so a studio or
    `sdstudio runs` sees a just-started trainer at once. A start that fails before the trainer
    wrote a status of its own (a refused resume, an output_dir that holds a run, a bad dataset)
    puts the run's previous status back: it was a refusal of this start, not the run's end.
    """
    control = control or TrainerControl()
    if not is_rank_zero():
        from sdstudio.core.training.trainer import train

        return train(cfg, on_event=on_event, control=control, resume=resume, force=force)
    path = run_path_for(cfg, resume)
    lock = run_lock.acquire(path)
    run = RunDir(path)
    previous = run.status() if run.status_json.exists() else None
    reader = None
    refused: BaseException | None = None
    try:
        if lock.stale_pid and on_event is not None:
            on_event(LogEvent(f"the run's previous trainer (pid {lock.stale_pid}) is gone; took over its lock",
                              "warning"))
        reader = CommandReader(path, control, on_event, signals=signals).start(getattr(cfg, "max_train_steps", None))
        from sdstudio.core.training.trainer import train

        return train(cfg, on_event=on_event, control=control, resume=resume, force=force)
    except BaseException as exc:
        refused = exc
        raise
    finally:
        if reader is not None:
            reader.close()  # before the status is put back: the reader writes status.json too
        if refused is not None and run.status().get("state") == STARTING:  # the trainer wrote nothing
            if previous is not None:
                atomic.write_json(run.status_json, previous)
            else:
                run.update_status(state=FAILED, error=str(refused) or type(refused).__name__, updated=time.time())
        lock.release()
