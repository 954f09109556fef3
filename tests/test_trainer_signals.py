"""Stops in every phase: SIGTERM (kill, a job scheduler, docker stop), SIGHUP and the Stop key take
effect within 2 s whether the trainer is loading, caching latents, making class images, sampling
or stepping; a checkpoint is kept if a step was taken; status.json never stays "running"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import draw_shape_images, tiny_train_values
from sdstudio.commands.train import stop_on_signals
from sdstudio.core import events as ev
from sdstudio.core.config import build_config
from sdstudio.core.io.toml_text import dumps_toml
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training.trainer import train


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdstudio", *args]


def start(tmp_path, values) -> tuple[subprocess.Popen, RunDir]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(dumps_toml(values))
    proc = subprocess.Popen(cli("train", str(cfg)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, RunDir(values["output_dir"])


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 120.0) -> list[str]:
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise AssertionError("process ended early:\n" + "".join(lines))
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError("timed out:\n" + "".join(lines))


def stop_and_time(proc: subprocess.Popen, sig: int) -> tuple[float, str]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    return time.monotonic() - t0, out


def test_sigterm_during_a_step_stops_within_2s_keeps_a_checkpoint_and_resumes(tiny_model_dir, instance_dir, tmp_path):
    proc, run = start(tmp_path, tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                                   instance_prompt="sks", max_train_steps=500, checkpointing_steps=1000,
                                                   validation_steps=1000))
    wait_for_line(proc, "step 3/500")
    seconds, out = stop_and_time(proc, signal.SIGTERM)
    print(f"SIGTERM during a step: exited in {seconds:.2f} s")
    assert seconds < 2.0, out
    assert proc.returncode == 128 + signal.SIGTERM, out
    status = run.status()
    assert status["state"] == "stopped" and run.latest_checkpoint().step == status["step"] >= 3
    assert f"resume with `sdstudio train --resume {run.path}`" in out
    step = status["step"]
    cfg = build_config({**run.config(), "max_train_steps": step + 1})
    assert train(cfg, resume=run.path).status()["state"] == "finished"
    assert [m["step"] for m in run.metrics()][-2:] == [step, step + 1]


def test_status_is_never_left_running_by_a_signal(tiny_model_dir, instance_dir, tmp_path):
    """SIGHUP (a dropped SSH session) as soon as the run exists: whichever phase it lands in."""
    proc, run = start(tmp_path, tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                                   instance_prompt="sks", max_train_steps=500))
    wait_for_line(proc, "4 training images; loading")
    seconds, out = stop_and_time(proc, signal.SIGHUP)
    assert seconds < 2.0 and proc.returncode == 128 + signal.SIGHUP, out
    assert run.status()["state"] == "stopped", out


def test_sigterm_during_latent_caching_stops_within_2s_and_is_resumable(tiny_model_dir, tmp_path):
    """In-process, so the signal lands while the latents are being cached (20 images, 40 with flips)."""
    folder = tmp_path / "many"
    draw_shape_images(folder, 20, (230, 30, 30))
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(folder),
                                         instance_prompt="sks", random_flip=True, max_train_steps=2))
    control = ev.TrainerControl()
    sent: list[float] = []
    seen: list[ev.Event] = []

    def on_event(event: ev.Event) -> None:
        seen.append(event)
        if isinstance(event, ev.LogEvent) and event.message.startswith("caching latents"):
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGTERM)

    with stop_on_signals(control) as received:
        run = train(cfg, on_event=on_event, control=control)
    seconds = time.monotonic() - sent[0]
    assert received == [signal.SIGTERM] and seconds < 2.0
    assert run.status()["state"] == "stopped" and run.status()["step"] == 0 and not run.checkpoints()
    assert not [e for e in seen if isinstance(e, (ev.StepEvent, ev.SampleEvent))]  # it never got past caching
    assert isinstance(seen[-1], ev.FinishedEvent) and seen[-1].stopped
    assert train(cfg, resume=run.path).status()["state"] == "finished"


def test_stop_during_class_images_and_step0_sampling_takes_effect_at_the_next_denoising_step(tiny_model_dir,
                                                                                              instance_dir, tmp_path):
    values = dict(instance_data_dir=str(instance_dir), instance_prompt="sks", with_prior_preservation=True,
                  class_data_dir=str(tmp_path / "class"), class_prompt="a shape", num_class_images=4,
                  sample_batch_size=2, validation_num_inference_steps=50, max_train_steps=2)
    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", **values))
    for phase in ("generating", "sampling"):
        control = ev.TrainerControl()
        seen: list[ev.Event] = []

        def on_event(event: ev.Event) -> None:
            seen.append(event)
            if isinstance(event, ev.LogEvent) and event.message.startswith(phase):
                control.request_stop()

        run = train(cfg, on_event=on_event, control=control, resume=tmp_path / "run" if phase == "sampling" else None)
        assert run.status()["state"] == "stopped" and run.status()["step"] == 0
        assert not [e for e in seen if isinstance(e, (ev.StepEvent, ev.SampleEvent))]
        if phase == "generating":  # stopped inside the first batch of 50 denoising steps: no image kept
            assert not list((tmp_path / "class").glob("*.png"))
    assert not run.samples()
