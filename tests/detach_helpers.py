"""Helpers for the tests that start real background trainers on the demo model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from sdstudio.core.runs.run_dir import RunDir
from test_tui_fixtures import make_dataset


def demo_config(folder: Path, broken: bool = False, **fields: Any) -> Path:
    """The smallest demo-model run: 32 px, batch 1, one prompt, two sampler steps."""
    data = make_dataset(folder / ("broken" if broken else "data"), broken=broken)
    values: dict[str, Any] = {"pretrained_model_name_or_path": "demo", "train_data_dir": str(data), "resolution": 32,
                              "train_batch_size": 1, "max_train_steps": 6, "checkpointing_steps": 3,
                              "validation_steps": 3, "validation_prompts": ["a red circle"],
                              "num_validation_images": 1, "validation_num_inference_steps": 2,
                              "learning_rate": 1e-3, **fields}
    path = folder / ("broken.toml" if broken else "demo-tiny.toml")
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def sdstudio(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdstudio", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def start_detached(config: Path, *overrides: str) -> Path:
    """`sdstudio train CONFIG --detach`; returns the run directory it printed."""
    done = sdstudio("train", str(config), "--detach", *overrides, timeout=60)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.splitlines()[0])


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def trainer_pid(run: Path) -> int:
    return int(RunDir(run).status().get("pid") or 0)


def kill_if_alive(pid: int) -> None:
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def runs_json(root: Path) -> dict[str, dict[str, Any]]:
    done = sdstudio("runs", "--json", "--root", str(root), timeout=60)
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}
