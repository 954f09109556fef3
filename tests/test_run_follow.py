"""Following a run from its folder alone (what the studio does for a detached run), and the
run-state rules: a dead trainer is "crashed — resumable", commands need a live trainer."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sdstudio.core.runs import lock as run_lock
from sdstudio.core.errors import SdstudioError
from sdstudio.core.events import CheckpointEvent, FailedEvent, FinishedEvent, SampleEvent, StepEvent, TrainerControl
from sdstudio.core.runs.control import CommandReader, send_command
from sdstudio.core.runs.follow import RunFollower
from sdstudio.core.runs.overview import CRASHED, run_state
from test_tui_fixtures import make_run


def test_a_follower_replays_a_run_then_reports_only_what_is_new(tmp_path: Path) -> None:
    run = make_run(tmp_path, steps=(0, 10), checkpoints=(10,), state="running")
    lock = run_lock.acquire(run.path)  # a live trainer holds the run
    try:
        follower = RunFollower(run.path)
        first = follower.poll()
        assert [e.step for e in first if isinstance(e, StepEvent)] == list(range(1, 11))
        assert [e.step for e in first if isinstance(e, CheckpointEvent)] == [10]
        assert not [e for e in first if isinstance(e, SampleEvent)]  # not sure yet that step 10's set is whole
        (samples,) = [e for e in follower.poll() if isinstance(e, SampleEvent)]
        assert samples.step == 10 and len(samples.paths) == 2
        run.append_metrics({"step": 11, "loss": 0.1, "lr": 1e-4})
        assert [type(e) for e in follower.poll()] == [StepEvent] and follower.poll() == []
        run.write_status("finished", 11, 11)
    finally:
        lock.release()
    events = follower.poll()
    assert isinstance(events[-1], FinishedEvent) and not events[-1].stopped and follower.ended


def test_a_run_whose_trainer_died_is_crashed_resumable_and_refuses_commands(tmp_path: Path) -> None:
    run = make_run(tmp_path, state="running")
    (run.path / "lock").write_text(json.dumps({"pid": 999999, "started": 0}))  # left by a kill -9
    assert run_state(run) == CRASHED and not run.is_alive()
    events = RunFollower(run.path).poll()
    assert isinstance(events[-1], FailedEvent) and "crashed — resumable" in events[-1].message
    with pytest.raises(SdstudioError, match="no trainer is running it .state: crashed — resumable"):
        send_command(run.path, "stop")
    lock = run_lock.acquire(run.path)
    assert lock.stale_pid == 999999  # the stale lock is detected and taken over
    with pytest.raises(run_lock.RunLockedError, match="already being trained by process"):
        run_lock.acquire(run.path)
    lock.release()


def test_commands_reach_the_trainer_flags_and_are_acknowledged_in_status(tmp_path: Path) -> None:
    run = make_run(tmp_path, state="running")
    lock = run_lock.acquire(run.path)
    control = TrainerControl()
    reader = CommandReader(run.path, control, interval=0.05).start()
    try:
        results = {}
        sender = threading.Thread(target=lambda: results.update(save=send_command(run.path, "save", wait=10)))
        sender.start()
        sender.join()
        assert results["save"] == "acknowledged" and control.save_now.is_set() and not control.stop.is_set()
        run.write_status("running", 20, 20)  # the trainer's own status writes keep the acknowledgements
        assert [c["command"] for c in run.status()["commands"]] == ["save"]
        assert not list((run.path / "commands").iterdir())
    finally:
        reader.close()
        lock.release()


def test_detach_checks_the_config_before_anything_starts(runs_root: Path, tmp_path: Path) -> None:
    from detach_helpers import demo_config, sdstudio

    config = demo_config(tmp_path)
    bad = sdstudio("train", str(config), "--detach", "--learning_rate", "fast", timeout=60)
    assert bad.returncode == 2 and "learning_rate" in bad.stderr and bad.stdout == ""
    assert not runs_root.exists() or not any(runs_root.iterdir())  # no run folder, no background process


def test_a_trainer_that_does_not_acknowledge_gets_the_signal_instead(tmp_path: Path) -> None:
    import signal

    from sdstudio.core.runs.control import install_signal_handlers

    run = make_run(tmp_path, state="running")
    lock = run_lock.acquire(run.path)  # this process "trains" the run, with signal handlers and no reader
    run.update_status(pid=lock.pid, reader={"pid": lock.pid, "signals": True})
    control = TrainerControl()
    saved = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2")}
    install_signal_handlers(control)
    try:
        how = send_command(run.path, "save", wait=0.3)
        assert how == f"signalled (SIGUSR2 to pid {lock.pid})" and control.save_now.is_set()
        assert not control.stop.is_set()
    finally:
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)
        lock.release()
