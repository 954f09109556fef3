"""SSH drops mid-run: a real `sdstudio` gets SIGHUP, saves a checkpoint and stops cleanly;
the next `sdstudio` offers to resume that run."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from sdstudio.core.runs import list_runs
from sdstudio.tui.app import StudioApp
from sdstudio.tui.screens.resume import ResumeScreen
from test_tui_fixtures import make_dataset, write_settings


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _running_step(runs_root: Path) -> int:
    for run in list_runs(runs_root):
        st = run.status()
        if st.get("state") == "running":
            return int(st.get("step") or 0)
    return -1


@pytest.mark.slow
async def test_sighup_saves_a_checkpoint_and_next_start_offers_resume(tiny_model_dir: Path, runs_root: Path,
                                                                      tmp_path: Path) -> None:
    settings = write_settings(tmp_path / "config.toml", tiny_model_dir, make_dataset(tmp_path / "data"),
                              max_train_steps=1000, checkpointing_steps=1000, validation_steps=1000)
    env = dict(os.environ, SDSTUDIO_CONFIG=str(settings), SDSTUDIO_RUNS=str(runs_root), TERM="xterm-256color",
               OMP_NUM_THREADS="1")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "sdstudio"], stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    screen = bytearray()

    def drain() -> None:  # a real terminal reads everything the app writes
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            screen.extend(chunk)

    threading.Thread(target=drain, daemon=True).start()
    try:
        _wait(lambda: b"Start" in screen, 60, "the studio's first screen")
        os.write(master, b"\x12")  # ctrl+r: Start
        _wait(lambda: _running_step(runs_root) >= 2, 180, "training steps")
        proc.send_signal(signal.SIGHUP)  # the SSH session is gone...
        os.close(master)  # ...and so is its terminal
        master = -1
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        if master >= 0:
            os.close(master)

    (run,) = list_runs(runs_root)
    status = json.loads(run.status_json.read_text())
    assert status["state"] == "stopped" and status["step"] >= 2
    assert run.latest_checkpoint().step == status["step"]  # no step lost

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert isinstance(app.screen, ResumeScreen) and app.screen.run.path == run.path
        await pilot.press("n")
        assert app.current_mode == "train" and not isinstance(app.screen, ResumeScreen)
