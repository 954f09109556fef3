"""The studio's detached runs: ctrl+b trains in the background, quitting leaves the run going and
a new studio re-attaches and stops it (ctrl+g); detached is the default on an SSH login; the queue
panel and ctrl+f (queue the form)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from detach_helpers import demo_config, kill_if_alive, sdstudio, wait_until
from sdstudio.core.runs import lock as run_lock
from sdstudio.core.runs import queue as run_queue
from sdstudio.core.errors import SdstudioError
from sdstudio.core.runs.queue_runner import _try_lock
from sdstudio.core.runs.run_dir import list_runs
from sdstudio.tui.app import StudioApp
from sdstudio.tui.settings import Settings, load_settings, parse_settings
from sdstudio.tui.widgets.queue_panel import QueuePanel
from test_tui_fixtures import make_dataset, make_run, wait_for, write_settings


async def test_ctrl_b_trains_in_the_background_and_the_run_outlives_the_studio(
        tiny_model_dir: Path, runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = write_settings(tmp_path / "config.toml", tiny_model_dir, make_dataset(tmp_path / "data"),
                              max_train_steps=2000, checkpointing_steps=1000, validation_steps=1000)
    monkeypatch.setenv("SDSTUDIO_CONFIG", str(settings))
    app = StudioApp(settings=load_settings())
    pid = 0
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+b")
            assert app.remote is not None and app.remote.process is not None
            pid = app.remote.process.pid
            await wait_for(pilot, lambda: app.session.step >= 1, timeout=120)
            assert app.session.busy and app.screen.check_action("start", ()) is False
            await pilot.press("ctrl+q")  # quits at once: the run is not the studio's to stop
            await pilot.pause(0.3)
            assert not app.is_running
        (run,) = list_runs(runs_root)
        assert run.is_alive()
        after_quit = int(run.status()["step"])
        wait_until(lambda: int(run.status()["step"]) > after_quit + 5, 60, "steps after the studio quit")
        again = StudioApp(settings=load_settings())  # a new studio (another SSH session) re-attaches
        async with again.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: again.remote is not None and again.session.step > after_quit, timeout=30)
            await pilot.press("ctrl+g")
            # shown as stopping at once; a stop takes well under a second now, so it may already be stopped
            assert again.session.state in ("stopping", "stopped")
            await wait_for(pilot, lambda: again.session.state == "stopped", timeout=60)
        status = run.status()
        assert status["state"] == "stopped" and run.latest_checkpoint().step == status["step"]
    finally:
        kill_if_alive(pid if pid and os.path.exists(f"/proc/{pid}") else 0)


async def test_a_studio_opened_the_moment_detach_returns_follows_that_run(runs_root: Path, tmp_path: Path) -> None:
    make_run(runs_root, "older", checkpoints=(10,), state="stopped")  # resumable, but not what just started
    config = demo_config(tmp_path, max_train_steps=3000, checkpointing_steps=1000, validation_steps=1000)
    done = sdstudio("train", str(config), "--detach", "--run_name", "fresh", timeout=120)
    assert done.returncode == 0, done.stderr
    run = Path(done.stdout.splitlines()[0])
    owner = run_lock.holder(run)  # when --detach returns, the run is already the child's
    pid = int(owner["pid"]) if owner else 0
    try:
        assert pid and f"pid {pid}" in done.stderr
        app = StudioApp()  # 0 s later
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.remote is not None, timeout=2)
            assert app.session.run_dir == run and app.session.busy and app.resume_offer is None
    finally:
        kill_if_alive(pid)


def test_detached_is_the_default_on_an_ssh_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for choice, ssh, expected in (("auto", True, True), ("auto", False, False), ("always", False, True),
                                  ("never", True, False)):
        for var in ("SSH_CONNECTION", "SSH_TTY"):
            monkeypatch.delenv(var, raising=False)
        if ssh:
            monkeypatch.setenv("SSH_CONNECTION", "10.0.0.2 50000 10.0.0.1 22")
        assert StudioApp(settings=Settings(detach_runs=choice)).wants_detached() is expected, (choice, ssh)
    with pytest.raises(SdstudioError, match="detach_runs"):
        parse_settings({"detach_runs": "sometimes"}, tmp_path / "config.toml")


async def test_the_queue_panel_shows_the_queue_and_ctrl_f_queues_the_form(
        tiny_model_dir: Path, runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = write_settings(tmp_path / "config.toml", tiny_model_dir, make_dataset(tmp_path / "data"))
    monkeypatch.setenv("SDSTUDIO_CONFIG", str(settings))
    held = _try_lock(runs_root / run_queue.RUNNER_LOCK)  # a runner "is active": nothing trains in this test
    assert held is not None
    try:
        run_queue.add(runs_root, str(tmp_path / "train.toml"), {"run_name": "night-1"})
        app = StudioApp(settings=load_settings())
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.3)
            panel = app.screen.query_one(QueuePanel)
            assert panel.display and "night-1" in str(panel.render()) and "1 waiting" in str(panel.render())
            await pilot.press("ctrl+f")
            await pilot.pause(0.3)
            items = run_queue.load(runs_root).items
            assert len(items) == 2 and items[1].run_name.startswith("train-")
            assert items[1].run_name in str(panel.render()) and "2 waiting" in str(panel.render())
    finally:
        os.close(held)
