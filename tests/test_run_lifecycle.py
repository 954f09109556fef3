"""The run lifecycle at its edges: probing a run never turns its trainer away, a refused start
leaves the run as it was, and the queue runner records how each trainer really ended."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from sdstudio.core.runs import lock as run_lock
from sdstudio.core.runs import queue as run_queue
from sdstudio.core.runs.run_dir import LORA_WEIGHTS_NAME, RunDir


def _stopped_run(path: Path, step: int = 3, total: int = 6) -> RunDir:
    """A run folder as a stopped trainer leaves it: run.toml, status 'stopped', a checkpoint."""
    run = RunDir(path)
    run.write_config({"max_train_steps": total}, {"version": "test"})
    run.write_status("stopped", step, total)
    ckpt = run.checkpoint_path(step)
    ckpt.mkdir(parents=True)
    (ckpt / LORA_WEIGHTS_NAME).write_bytes(b"")
    return run


def test_asking_who_trains_a_run_never_turns_a_starting_trainer_away(tmp_path: Path) -> None:
    # the studio asks from its UI thread while its worker thread starts a trainer (and `sdstudio
    # runs`, the queue runner ask from other processes): the trainer must get the lock every time;
    # the old probe took it shared for an instant and turned most of these starts away
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            run_lock.holder(tmp_path)

    run_lock.acquire(tmp_path).release()  # the lock file exists, as after any earlier trainer
    probers = [threading.Thread(target=probe, daemon=True) for _ in range(2)]
    for thread in probers:
        thread.start()
    refused = 0
    try:
        for _ in range(100):
            try:
                taken = run_lock.acquire(tmp_path)
            except run_lock.RunLockedError:
                refused += 1
                continue
            assert run_lock.holder(tmp_path)["pid"] == os.getpid()  # and a probe still sees the holder
            taken.release()
    finally:
        stop.set()
        for thread in probers:
            thread.join(timeout=5)
    assert refused == 0
    assert run_lock.holder(tmp_path) is None


def test_a_refused_train_leaves_the_existing_runs_status_as_it_was(tiny_model_dir: Path, instance_dir: Path,
                                                                    tmp_path: Path) -> None:
    from conftest import tiny_train_values
    from sdstudio.core.config import build_config
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.training.launch import train_with_commands

    run = _stopped_run(tmp_path / "taken")
    before = json.loads(run.status_json.read_text())
    cfg = build_config(tiny_train_values(tiny_model_dir, run.path, instance_data_dir=str(instance_dir),
                                         instance_prompt="a photo of sks dog"))
    with pytest.raises(SdstudioError, match="already holds a run"):
        train_with_commands(cfg)
    assert json.loads(run.status_json.read_text()) == before  # still "stopped", resumable; not "failed"
    assert run_lock.holder(run.path) is None


def _queued(root: Path, run_dir: Path, state: str = run_queue.RUNNING) -> run_queue.QueueItem:
    with run_queue.edit(root) as queue:
        item = run_queue.QueueItem(id="a1", config=str(root / "a1.toml"), label="a.toml", run_name=run_dir.name,
                                   run_dir=str(run_dir), total=6, added=time.time() - 5, state=state,
                                   started=time.time() - 5)
        queue.items.append(item)
    return item


def test_the_queue_runner_records_a_run_stopped_by_sigterm_as_stopped(tmp_path: Path) -> None:
    from sdstudio.core.runs.queue_runner import _outcome

    item = _queued(tmp_path, tmp_path / "night")
    _stopped_run(Path(item.run_dir))  # what `sdstudio train` leaves on SIGTERM: status stopped, exit 143
    assert _outcome(item, 128 + signal.SIGTERM) == ("stopped", None)


def test_the_queue_runner_records_a_crashed_trainer_as_crashed_not_exit_code_0(tmp_path: Path) -> None:
    from sdstudio.core.runs.queue_runner import run_queue_loop

    root = tmp_path / "runs"
    item = _queued(root, root / "night")  # left running by a runner that died; its trainer lives on
    run = _stopped_run(Path(item.run_dir))
    trainer = run_lock.acquire(run.path)
    run.write_status("running", 4, 6)
    # the trainer dies (kill -9: the kernel drops its lock) while the new runner waits for it
    threading.Timer(0.3, trainer.release).start()
    old = signal.getsignal(signal.SIGTERM)
    try:
        assert run_queue_loop(root) == 0
    finally:
        signal.signal(signal.SIGTERM, old)
    (done,) = run_queue.load(root).items
    assert done.state == run_queue.FAILED and done.exit_code is None
    assert "crashed" in done.error and "code 0" not in done.error and "step 4" in done.error


def test_the_queue_runner_records_why_a_refused_start_failed(tmp_path: Path) -> None:
    from sdstudio.core.runs.queue_runner import _outcome

    item = _queued(tmp_path, tmp_path / "night")
    run = _stopped_run(Path(item.run_dir))
    (run.path / "logs").mkdir()
    (run.path / "logs" / "trainer.log").write_text("loading\nerror: night: cannot resume: the inputs changed\n")
    # a refused resume leaves the run's status as it was (stopped, before this entry started)
    run.update_status(updated=time.time() - 60)
    state, error = _outcome(item, 2)
    assert state == "failed" and "exited with code 2: night: cannot resume: the inputs changed" in error


def test_a_trainer_that_has_not_written_run_toml_yet_is_listed_and_found_live(runs_root: Path) -> None:
    """The moment after `train --detach` returns: the child holds the lock and said "starting", but
    loads the model before it writes run.toml. `runs` and the studio must see it all the same."""
    from sdstudio.core.runs.control import CommandReader
    from sdstudio.core.events import TrainerControl
    from sdstudio.core.runs.overview import all_runs
    from sdstudio.tui.remote_run import newest_live_run

    _stopped_run(runs_root / "older")
    fresh = runs_root / "fresh"
    trainer = run_lock.acquire(fresh)
    reader = CommandReader(fresh, TrainerControl()).start()
    try:
        assert not (fresh / "run.toml").exists()
        row = next(r for r in all_runs(runs_root) if r.name == "fresh")
        assert (row.state, row.pid) == ("starting", os.getpid())
        assert newest_live_run() == fresh
    finally:
        reader.close()
        trainer.release()


def test_a_trainer_of_an_older_sdstudio_still_keeps_a_new_one_off_its_run(tmp_path: Path) -> None:
    """Older versions locked with flock only: upgraded during a detached run, a new trainer is refused."""
    import fcntl

    fd = os.open(run_lock.lock_path(tmp_path), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the older trainer holds
        os.write(fd, json.dumps({"pid": 4242, "started": 0}).encode())
        with pytest.raises(run_lock.RunLockedError, match="already being trained by process 4242"):
            run_lock.acquire(tmp_path)
    finally:
        os.close(fd)
    run_lock.acquire(tmp_path).release()  # free again once it has gone
