"""Runs that outlive the terminal, with real processes on the demo model: detach, survive a
hang-up, one trainer per run, the studio follows a run another terminal started, sample / save /
stop from anywhere, crash and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from detach_helpers import (demo_config, kill_if_alive, runs_json, sdstudio, start_detached, trainer_pid,
                            wait_until)
from sdstudio.core.runs.run_dir import RunDir

pytestmark = pytest.mark.slow


def _tty_nr(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[4])


def test_detached_run_survives_its_parents_exit_and_hangup_and_finishes(runs_root: Path, tmp_path: Path) -> None:
    config = demo_config(tmp_path, max_train_steps=40, checkpointing_steps=20, validation_steps=20)
    out = tmp_path / "shell.out"
    # a login shell of its own session starts the run and stays; then its session hangs up
    shell = subprocess.Popen(["bash", "-c", f'"{sys.executable}" -m sdstudio train "{config}" --detach > "{out}"; '
                                            "exec sleep 300"], start_new_session=True)
    pid, run = 0, tmp_path / "not-yet"
    try:
        run = Path(wait_until(lambda: out.exists() and out.read_text().strip(), 60, "the run directory").splitlines()[0])
        pid = wait_until(lambda: trainer_pid(run), 120, "the trainer's status")
        assert os.getsid(pid) != os.getsid(shell.pid) and os.getpgid(pid) == pid  # its own session and group
        assert _tty_nr(pid) == 0  # no controlling terminal
        second = sdstudio("train", str(config), "--output_dir", str(run), timeout=60)  # one trainer per run
        assert second.returncode == 3 and f"already being trained by process {pid}" in second.stderr
        os.killpg(shell.pid, signal.SIGHUP)  # the SSH session is gone
        assert shell.wait(timeout=10) == -signal.SIGHUP
        status = wait_until(lambda: RunDir(run).status().get("state") in ("finished", "failed") and RunDir(run).status(),
                            240, "the detached run to finish")
        assert status["state"] == "finished" and status["step"] == 40, status
        assert RunDir(run).latest_checkpoint().step == 40
        assert "finished at step 40" in (run / "logs" / "trainer.log").read_text()
        assert runs_json(runs_root)[run.name]["state"] == "finished"
    finally:
        if shell.poll() is None:
            shell.kill()
        kill_if_alive(pid if RunDir(run).is_alive() else 0)


def test_kill_9_shows_crashed_resumable_and_resume_finishes(runs_root: Path, tmp_path: Path) -> None:
    config = demo_config(tmp_path, max_train_steps=20, checkpointing_steps=5, validation_steps=1000)
    run = start_detached(config, "--run_name", "victim")
    pid = 0
    try:
        wait_until(lambda: (RunDir(run).latest_checkpoint() or 0) and RunDir(run).latest_checkpoint().step >= 5,
                   180, "a checkpoint")
        pid = trainer_pid(run)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
                   30, "the trainer to die")
        row = runs_json(runs_root)["victim"]
        assert row["state"] == "crashed — resumable" and RunDir(run).status()["state"] == "running"
        listed = sdstudio("runs", timeout=60).stdout
        assert "crashed — resumable" in listed and "victim" in listed
        refused = sdstudio("stop", str(run), timeout=60)
        assert refused.returncode == 2 and "crashed — resumable" in refused.stderr

        resumed = sdstudio("train", "--resume", str(run), timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert f"previous trainer (pid {pid}) is gone" in resumed.stdout
        status = RunDir(run).status()
        assert status["state"] == "finished" and status["step"] == 20
        assert runs_json(runs_root)["victim"]["state"] == "finished"
    finally:
        kill_if_alive(pid if RunDir(run).is_alive() else 0)


async def test_the_studio_follows_a_detached_run_and_commands_reach_it_from_anywhere(runs_root: Path,
                                                                                    tmp_path: Path) -> None:
    from textual.widgets import Sparkline, Static

    from sdstudio.tui.app import StudioApp
    from sdstudio.tui.widgets.train_live import TrainingView
    from test_tui_fixtures import wait_for

    config = demo_config(tmp_path, max_train_steps=3000, checkpointing_steps=1000, validation_steps=1000)
    run = start_detached(config, "--run_name", "followed")  # "from another terminal"
    pid = 0
    try:
        wait_until(lambda: RunDir(run).status().get("state") == "running", 180, "the trainer to start")
        pid = trainer_pid(run)
        assert runs_json(runs_root)["followed"]["state"] == "running"
        app = StudioApp()
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.remote is not None, timeout=10)  # attached at start-up
            assert app.session.run_dir == run and app.current_mode == "train"
            await wait_for(pilot, lambda: app.session.step >= 2, timeout=60)
            first = app.session.step
            await wait_for(pilot, lambda: app.session.step > first + 3, timeout=60)  # new steps keep arriving
            assert app.session.sample_step == 0  # validation_steps is far: only step 0 so far

            await pilot.press("ctrl+n")  # sample now, from the studio, through the run folder
            await wait_for(pilot, lambda: (app.session.sample_step or 0) > first, timeout=120)  # new samples
            await pilot.pause(0.6)
            live = app.screen.query_one(TrainingView)
            assert live.shown_samples and live.shown_samples[0].parent == run / "samples"
            assert f"step-{app.session.sample_step:06d}" in live.shown_samples[0].name
            assert len(live.query_one("#loss", Sparkline).data) >= first + 3
            assert str(live.query_one("#state", Static).render()).startswith("Running  followed")

            saved = subprocess.run([sys.executable, "-m", "sdstudio", "save", str(run)], capture_output=True,
                                   text=True, timeout=60)  # another terminal: save now
            assert saved.returncode == 0 and "save: acknowledged" in saved.stdout, saved.stderr
            await wait_for(pilot, lambda: RunDir(run).latest_checkpoint() is not None, timeout=60)
            assert RunDir(run).status()["state"] == "running"  # save-now does not stop the run
            stop = subprocess.Popen([sys.executable, "-m", "sdstudio", "stop", str(run), "--wait"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            await wait_for(pilot, lambda: app.session.state == "stopped", timeout=120)  # the studio saw it end
            out, err = stop.communicate(timeout=60)
            await pilot.pause(0.6)
            assert str(live.query_one("#state", Static).render()).startswith("Stopped")
        assert stop.returncode == 0 and "stop: acknowledged" in out and "stopped at step" in out, err
        status = RunDir(run).status()
        assert status["state"] == "stopped" and RunDir(run).latest_checkpoint().step == status["step"]
        assert [(c["command"], c["from"].split(" (")[0]) for c in status["commands"]] == [
            ("sample", "the studio"), ("save", "sdstudio save"), ("stop", "sdstudio stop")]
        log = (run / "logs" / "trainer.log").read_text()
        assert "stop requested" in log and f"stopped at step {status['step']}" in log
        late = sdstudio("stop", str(run), timeout=60)
        assert late.returncode == 2 and "no trainer is running it (state: stopped)" in late.stderr
    finally:
        kill_if_alive(pid if RunDir(run).is_alive() else 0)
