"""Stops in every phase: SIGTERM (kill, a job scheduler, docker stop), SIGHUP and the Stop key take
effect within 2 s whether the trainer is loading, caching latents, making class images, sampling
or stepping; a checkpoint is kept if a step was taken; status.json never stays "running"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import default_signals, draw_shape_images, tiny_train_values
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
    proc = subprocess.Popen(cli("train", str(cfg)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_signals)
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


def test_a_second_signal_during_the_stops_checkpoint_exits_at_once_without_saving_again(
        tiny_model_dir, instance_dir, tmp_path, monkeypatch):
    """The README's "a second one stops at once": the stop's save is not started again, and the
    checkpoint swap it cut short leaves the previous checkpoint whole and the status consistent."""
    import pytest

    from sdstudio.core.training import checkpoint

    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="sks", max_train_steps=500, checkpointing_steps=2,
                                         validation_steps=1000))
    control = ev.TrainerControl()
    stop_saves: list[str] = []
    real_write = checkpoint.write_lora_weights

    def write_lora_weights(folder, trained):  # type: ignore[no-untyped-def]
        if control.stop.is_set():
            stop_saves.append(folder.name)
            if len(stop_saves) == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # the second signal, in the middle of the stop's save
        real_write(folder, trained)

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.StepEvent) and event.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # the first: stop with a checkpoint

    monkeypatch.setattr(checkpoint, "write_lora_weights", write_lora_weights)
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # whatever this process inherited
    try:
        with pytest.raises(KeyboardInterrupt), stop_on_signals(control):
            train(cfg, on_event=on_event, control=control)
    finally:
        signal.signal(signal.SIGTERM, previous)
    run = RunDir(tmp_path / "run")
    assert stop_saves == ["step-000003.tmp"]  # started once, never again
    status = run.status()
    assert status["state"] == "stopped" and status["step"] == run.latest_checkpoint().step == 2
    assert not [p.name for p in run.checkpoints_dir.iterdir() if p.name.endswith((".tmp", ".old"))]


KILLED_AFTER_THE_STOPS_CHECKPOINT = """
import os, sys
from sdstudio.core.training import checkpoint
real_commit = checkpoint.commit
def commit(run, step):
    record = real_commit(run, step)
    if any(a.get("command") == "stop" for a in run.status().get("commands") or []):
        os._exit(9)  # killed after the stop's checkpoint, before its status
    return record
checkpoint.commit = commit
from sdstudio.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_between_the_stops_checkpoint_and_its_status_is_repaired_on_the_next_open(
        tiny_model_dir, instance_dir, tmp_path):
    from sdstudio.core.runs.control import send_command
    from sdstudio.core.runs.overview import overview

    values = tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                               instance_prompt="sks", max_train_steps=500, checkpointing_steps=1000,
                               validation_steps=1000)
    (tmp_path / "c.toml").write_text(dumps_toml(values))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_AFTER_THE_STOPS_CHECKPOINT, "train", str(tmp_path / "c.toml")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=default_signals)
    run = RunDir(values["output_dir"])
    wait_for_line(proc, "step 3/500")
    send_command(run.path, "stop", wait=0)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 9, out
    assert run.status()["state"] == "running"  # as the kill left it
    row = overview(run)  # what `sdstudio runs` and the studio read
    status = run.status()
    assert row.state == status["state"] == "stopped", out
    assert row.step == status["step"] == run.latest_checkpoint().step >= 3
    # what the stop left for later, `sdstudio score` does first: the checkpoint's validation loss and samples
    from sdstudio.core.training.pending import complete_pending

    step = status["step"]
    assert run.pending() == {"val_loss": [step], "samples": [step]} and step not in run.validation_losses()
    assert complete_pending(run, log=lambda _line: None) == [step]
    assert run.pending() == {} and run.validation_losses()[step] > 0
    assert {s.step for s in run.samples()} == {0, step}


def test_a_stop_inside_a_step_ends_it_before_any_weight_changes(tiny_model_dir, instance_dir, tmp_path):
    """A stop that lands in the UNet's forward of step 3 ends that step: checkpoint and status at step 2,
    the weights still step 2's (a slow step never holds a stop, nor a hang-up, for its whole length)."""
    from sdstudio.core.training import checkpoint
    from sdstudio.core.training.trainer import Trainer

    cfg = build_config(tiny_train_values(tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir),
                                         instance_prompt="sks", max_train_steps=50, checkpointing_steps=2,
                                         validation_steps=1000))
    control = ev.TrainerControl()
    seen: list[ev.Event] = []
    digest_at_2: list[str] = []

    def on_event(event: ev.Event) -> None:
        seen.append(event)
        if isinstance(event, ev.CheckpointEvent) and event.step == 2:
            digest_at_2.append(checkpoint.lora_digest(trainer.models.plain()))
            # step 3's forward, deep inside the UNet, is where the stop lands
            trainer.models.plain()["unet"].up_blocks[-1].register_forward_pre_hook(lambda *_: control.request_stop())

    trainer = Trainer(cfg, on_event, control, None)
    run = trainer.run()
    assert [e.step for e in seen if isinstance(e, ev.StepEvent)] == [1, 2]
    assert run.status()["state"] == "stopped" and run.status()["step"] == run.latest_checkpoint().step == 2
    assert [c.step for c in run.checkpoints()] == [2] and checkpoint.lora_digest(trainer.models.plain()) == digest_at_2[0]


def test_a_signal_during_an_except_exception_block_still_stops(tiny_model_dir, monkeypatch):
    """A signal in an abortable phase raises StopRequested wherever the main thread is; code there
    that turns any Exception into a fallback (the memory estimate's header reading did) must not
    swallow the stop, or it waits for the next check (7.5 s in CI)."""
    import sdstudio.core.training.model_sizes as ms
    from sdstudio.core.models import resolve_base_model

    control = ev.TrainerControl()
    real = ms.safetensors_keys

    def read_then_signal(path):
        control.stop_from_signal()  # what the SIGHUP handler does, here mid-read
        return real(path)

    monkeypatch.setattr(ms, "safetensors_keys", read_then_signal)
    base = resolve_base_model(str(tiny_model_dir))
    returned = []
    with pytest.raises(ev.StopRequested):
        with control.abortable_phase():
            returned.append(ms.model_sizes(base))
    assert not returned  # the stop ended the read there; no fallback estimate was made while it waited
