"""The run queue: a background runner trains queued demo runs one after another, records a
failure and goes on; the queue file survives the runner (a reboot) and there is one runner."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from detach_helpers import demo_config, runs_json, sdstudio, wait_until
from sdstudio.core.runs import queue as run_queue
from sdstudio.core.runs.queue_runner import _next, _try_lock, run_queue_loop, runner_active
from sdstudio.core.runs.run_dir import RunDir


@pytest.mark.slow
def test_a_queue_of_three_with_a_broken_middle_finishes_first_and_third(runs_root: Path, tmp_path: Path) -> None:
    good = demo_config(tmp_path, max_train_steps=2, checkpointing_steps=2, validation_steps=2)
    broken = demo_config(tmp_path, broken=True, max_train_steps=2)
    for config, name in ((good, "first"), (broken, "second"), (good, "third")):
        added = sdstudio("queue", "add", str(config), "--run_name", name, timeout=60)
        assert added.returncode == 0 and f"queued {name}" in added.stdout, added.stderr
    assert json.loads((runs_root / "queue.json").read_text())["items"][2]["run_name"] == "third"  # on disk at once
    listed = runs_json(runs_root)
    assert listed["third"]["state"] == "queued"

    wait_until(lambda: not runner_active(runs_root), 400, "the runner to empty the queue and exit")
    states = {i.run_name: i for i in run_queue.load(runs_root).items}
    assert [states[n].state for n in ("first", "second", "third")] == ["finished", "failed", "finished"]
    assert "no usable image" in states["second"].error and states["second"].exit_code != 0
    assert RunDir(runs_root / "first").status()["step"] == 2 and RunDir(runs_root / "third").status()["step"] == 2
    assert [i.run_name for i in run_queue.load(runs_root).items] == ["first", "second", "third"]
    shown = sdstudio("queue", "list", timeout=60).stdout
    assert "failed" in shown and "no usable image" in shown and "runner: not running" in shown
    log = (runs_root / "queue" / "runner.log").read_text()
    assert log.index("starting first") < log.index("second: failed") < log.index("starting third")


def test_queue_add_refuses_a_bad_config_and_remove_clear_edit_the_file(runs_root: Path, tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    bad = sdstudio("queue", "add", str(config), "--max_train_steps", "zero", timeout=60)
    assert bad.returncode == 2 and "max_train_steps" in bad.stderr
    assert not (runs_root / "queue.json").exists()
    for name in ("a", "b", "c"):
        run_queue.add(runs_root, str(config), {"run_name": name})
    assert [i.run_name for i in run_queue.remove(runs_root, 2) and run_queue.load(runs_root).items] == ["a", "c"]
    frozen = Path(run_queue.load(runs_root).items[0].config)
    assert frozen.parent == runs_root / "queue" and "run_name = \"a\"" in frozen.read_text()
    gone = sdstudio("queue", "remove", "7", timeout=60)
    assert gone.returncode == 2 and "no queue entry 7" in gone.stderr
    assert run_queue.clear(runs_root) == 2 and run_queue.load(runs_root).items == [] and not frozen.exists()


def test_a_later_runner_resumes_an_entry_its_dead_predecessor_left_running(runs_root: Path, tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    item = run_queue.add(runs_root, str(config), {"run_name": "cut"})
    with run_queue.edit(runs_root) as queue:  # what a runner killed by a reboot leaves behind
        queue.items[0].state = run_queue.RUNNING
    RunDir(item.run_dir).write_config({"max_train_steps": 6}, {"version": "test"})
    fd = _try_lock(runs_root / run_queue.RUNNER_LOCK)
    assert fd is not None
    claimed = _next(runs_root, fd)
    assert claimed is not None and claimed.id == item.id and claimed.resume  # continued, not restarted
    assert run_queue.load(runs_root).items[0].state == run_queue.RUNNING
    assert run_queue_loop(runs_root) == 1  # one runner only: a second one leaves at once
    os.close(fd)
