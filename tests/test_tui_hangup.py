"""SSH drops: a real `sdstudio` in a pty is gone within 5 s of losing its terminal, on every
screen and in every state; mid-run it first saves a checkpoint and stops cleanly, and the next
`sdstudio` offers to resume that run."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from sdstudio.core.runs.run_dir import list_runs
from sdstudio.tui.app import StudioApp
from test_tui_fixtures import make_dataset, write_settings


EXIT_WITHIN_S = 5.0
SCREEN_MARK = {  # text only that screen draws, and the key that opens it from anywhere
    "dataset": (b"\x1bOP", b"Train \xe2\x86\x92"), "train": (b"\x1bOQ", b"Run setup"),
    "checkpoints": (b"\x1bOR", b"No runs in"), "generate": (b"\x1bOS", b"what to draw"),
    "merge": (b"\x1b[15~", b"A (base)"),
}


def _own_terminal() -> None:
    """In the child: the pty becomes the controlling terminal, so closing it sends SIGHUP (as sshd does);
    SIGHUP and SIGINT at their defaults, whatever this test process inherited (nohup, `&`)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Studio:
    """A real `sdstudio` process on a pty of its own (80x24), its output read as a terminal would."""

    def __init__(self, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen([sys.executable, "-m", "sdstudio"], stdin=slave, stdout=slave, stderr=slave,
                                     env=env, start_new_session=True, preexec_fn=_own_terminal)
        os.close(slave)
        self.screen = bytearray()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        # never block in read(): a blocked read would keep the pty open after close_terminal closes it
        while not self._closing.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.screen.extend(chunk)

    def seen_after(self, mark: bytes, start: int) -> bool:
        return mark in bytes(self.screen[start:])

    def close_terminal(self) -> float:
        """Close the pty as a dropped connection does; seconds until the process was gone."""
        self._closing.set()
        self._reader.join()
        closed = time.monotonic()
        os.close(self.master)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return float("inf")
        return time.monotonic() - closed


@pytest.mark.parametrize("screen", list(SCREEN_MARK))
def test_closing_the_terminal_ends_the_studio_on_every_screen(screen: str, runs_root: Path, tmp_path: Path) -> None:
    env = dict(os.environ, SDSTUDIO_RUNS=str(runs_root), SDSTUDIO_CONFIG=str(tmp_path / "none.toml"),
               TERM="xterm-256color", OMP_NUM_THREADS="1", SDSTUDIO_IMAGES="halfcell")
    studio = Studio(env)
    try:
        _wait(lambda: studio.seen_after(b"Run setup", 0), 60, "the studio's first screen")
        key, mark = SCREEN_MARK[screen]
        if screen != "train":  # the studio opens on Train; the others are one key away
            start = len(studio.screen)
            os.write(studio.master, key)
            _wait(lambda: studio.seen_after(mark, start), 60, f"the {screen} screen")
        time.sleep(0.5)
        assert studio.proc.poll() is None
        gone_after = studio.close_terminal()
    finally:
        if studio.proc.poll() is None:
            studio.proc.kill()
    assert gone_after <= EXIT_WITHIN_S, f"{screen}: still running {gone_after:.1f} s after the terminal closed"


def test_closing_the_terminal_while_a_model_loads_ends_the_studio(runs_root: Path, tmp_path: Path) -> None:
    """Generate with its worker busy (torch, diffusers and the demo model loading): still gone in 5 s."""
    env = dict(os.environ, SDSTUDIO_RUNS=str(runs_root), SDSTUDIO_CONFIG=str(tmp_path / "none.toml"),
               TERM="xterm-256color", OMP_NUM_THREADS="1", SDSTUDIO_IMAGES="halfcell")
    studio = Studio(env)
    try:
        _wait(lambda: studio.seen_after(b"Run setup", 0), 60, "the studio's first screen")
        start = len(studio.screen)
        os.write(studio.master, SCREEN_MARK["generate"][0])
        _wait(lambda: studio.seen_after(b"what to draw", start), 60, "the generate screen")
        os.write(studio.master, b"a red circle")  # lands in the prompt
        time.sleep(0.3)
        os.write(studio.master, b"\x12")  # ctrl+r: generate
        time.sleep(2.0)  # the worker is importing torch / loading the model now
        assert studio.proc.poll() is None
        gone_after = studio.close_terminal()
    finally:
        if studio.proc.poll() is None:
            studio.proc.kill()
    assert gone_after <= EXIT_WITHIN_S, f"still running {gone_after:.1f} s after the terminal closed"


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
async def test_closing_the_terminal_mid_run_saves_a_checkpoint_marks_it_stopped_and_next_start_offers_resume(
        tiny_model_dir: Path, runs_root: Path, tmp_path: Path) -> None:
    """A dropped connection while the studio trains: gone within 5 s, checkpoint and status at the same
    step. The validation loss is made to cost far more than those 5 s (1000 timesteps): a stop leaves it
    pending and never waits for it."""
    settings = write_settings(tmp_path / "config.toml", tiny_model_dir, make_dataset(tmp_path / "data"),
                              max_train_steps=1000, checkpointing_steps=1000, validation_steps=1000,
                              validation_loss_timesteps=1000)
    env = dict(os.environ, SDSTUDIO_CONFIG=str(settings), SDSTUDIO_RUNS=str(runs_root), TERM="xterm-256color",
               OMP_NUM_THREADS="1")
    studio = Studio(env)
    try:
        _wait(lambda: studio.seen_after(b"Start", 0), 60, "the studio's first screen")
        os.write(studio.master, b"\x12")  # ctrl+r: Start
        _wait(lambda: _running_step(runs_root) >= 2, 180, "training steps")
        gone_after = studio.close_terminal()  # the SSH session is gone: the kernel sends SIGHUP
    finally:
        if studio.proc.poll() is None:
            studio.proc.kill()
    assert gone_after <= EXIT_WITHIN_S, f"still running {gone_after:.1f} s after the terminal closed"

    (run,) = list_runs(runs_root)
    status = json.loads(run.status_json.read_text())  # as the studio left it, before anything repairs it
    assert status["state"] == "stopped" and status["step"] >= 2
    assert run.latest_checkpoint().step == status["step"]  # no step lost
    assert run.pending()["val_loss"] == [status["step"]]  # measured on resume or by `sdstudio score`

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert app.resume_offer is not None and app.resume_offer.run.path == run.path  # the bar, F6 resumes
        await pilot.press("n")
        assert app.current_mode == "train" and app.resume_offer is not None  # a stray key answers nothing
