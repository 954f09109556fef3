"""Several processes training the text encoder too: every rank must end each step with the same
LoRA weights (DDP all-reduces the text encoder's gradients only if prompts go through the
prepared module). Each rank computes a digest of its LoRA tensors at every checkpoint; the
main process logs them all and refuses to save when they differ.

SDXL reads both text encoders at their penultimate layer: a LoRA layer on CLIP-L's last layer
would get no gradient, which DDP refuses at the next step."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import tiny_train_values
from sdstudio.core.io.toml_text import dumps_toml
from sdstudio.core.runs.run_dir import RunDir


MULTIPROC = pytest.mark.skipif(os.environ.get("SDSTUDIO_SKIP_MULTIPROC") == "1", reason="multi-process test disabled")


def _launch_two(cfg) -> subprocess.CompletedProcess:
    """`sdstudio train CFG` in two processes joined with gloo (`--multi_gpu` on a machine without a
    GPU; `--cpu` would start one)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "sdstudio", "train", str(cfg)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _digest_lines(stdout: str, what: str = "LoRA") -> list[str]:
    """The '<what> digests at step N' lines, each checked to show rank 0 and rank 1 agreeing."""
    lines = [line for line in stdout.splitlines() if line.startswith(f"{what} digests")]
    print("\n".join(lines))
    for line in lines:
        digests = re.findall(r"rank (\d) ([0-9a-f]{16})", line)
        assert [r for r, _ in digests] == ["0", "1"] and digests[0][1] == digests[1][1], line
    return lines


@MULTIPROC
def test_two_processes_training_both_sdxl_text_encoders_hold_identical_lora_weights(tiny_sdxl_dir, instance_dir,
                                                                                    tmp_path):
    """SDXL (two text encoders, both trained) on two processes, two micro-batches per step (fast_path
    off, so each micro-batch is its own backward and all but the last skip the all-reduce of every
    trained model). One multi-process test, on SDXL: it takes the SD path's steps and more."""
    cfg = tmp_path / "mp-sdxl.toml"
    cfg.write_text(dumps_toml(tiny_train_values(
        tiny_sdxl_dir, tmp_path / "run", instance_data_dir=str(instance_dir), instance_prompt="sks",
        train_text_encoder=True, max_train_steps=3, checkpointing_steps=2, gradient_accumulation_steps=2,
        fast_path=False, validation_loss=False, num_validation_images=0)))
    done = _launch_two(cfg)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = _digest_lines(done.stdout)
    assert [re.match(r"LoRA digests at step (\d+)", line).group(1) for line in lines] == ["2", "3"]
    run = RunDir(tmp_path / "run")
    assert run.status()["state"] == "finished" and [c.step for c in run.checkpoints()] == [2, 3]
    assert done.stdout.count("finished at step 3") == 1  # only the main process reports
    assert all(m["images_per_s"] > 0 for m in run.metrics()) and len(run.metrics()) == 3
    from safetensors import safe_open

    with safe_open(str(run.latest_checkpoint().weights), "pt") as f:
        keys = list(f.keys())
    for component in ("unet.", "text_encoder.", "text_encoder_2."):
        assert any(k.startswith(component) for k in keys), component
    # CLIP-L is read at its penultimate layer (of 2): its last layer carries no LoRA; bigG's pooled
    # output comes from its last layer, which keeps its LoRA
    assert not any(k.startswith("text_encoder.text_model.encoder.layers.1.") for k in keys)
    assert any(k.startswith("text_encoder_2.text_model.encoder.layers.1.") for k in keys)


@MULTIPROC
def test_two_processes_full_fine_tune_agree_at_every_checkpoint(tiny_model_dir, instance_dir, tmp_path):
    """A full fine-tune (every UNet and text-encoder weight, with EMA) on two processes: each rank
    digests all its trained weights at every checkpoint and they must be equal; the checkpoints
    hold model/ and ema/ as full runs do."""
    from sdstudio.core.full import layout

    cfg = tmp_path / "mp-full.toml"
    cfg.write_text(dumps_toml(tiny_train_values(
        tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir), instance_prompt="sks",
        training_method="full", train_text_encoder=True, text_encoder_lr=5e-4, use_ema=True, max_train_steps=3,
        checkpointing_steps=2, validation_loss=False, num_validation_images=0)))
    done = _launch_two(cfg)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = _digest_lines(done.stdout, "Full-weights")
    assert [re.match(r"Full-weights digests at step (\d+)", line).group(1) for line in lines] == ["2", "3"]
    run = RunDir(tmp_path / "run")
    assert run.status()["state"] == "finished" and [c.step for c in run.checkpoints()] == [2, 3]
    ckpt = run.latest_checkpoint().path
    assert set(layout.trained_components(ckpt)) == set(layout.trained_components(ckpt, ema=True)) == {"unet", "text_encoder"}
