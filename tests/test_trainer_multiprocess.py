"""Several processes training the text encoder too: every rank must end each step with the same
LoRA weights (DDP all-reduces the text encoder's gradients only if prompts go through the
prepared module). Each rank computes a digest of its LoRA tensors at every checkpoint; the
main process logs them all and refuses to save when they differ."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import tiny_train_values
from sdstudio.core.io.toml_text import dumps_toml
from sdstudio.core.runs.run_dir import RunDir


@pytest.mark.skipif(os.environ.get("SDSTUDIO_SKIP_MULTIPROC") == "1", reason="multi-process test disabled")
def test_two_processes_training_the_text_encoder_hold_identical_lora_weights(tiny_model_dir, instance_dir, tmp_path):
    cfg = tmp_path / "mp.toml"
    cfg.write_text(dumps_toml(tiny_train_values(
        tiny_model_dir, tmp_path / "run", instance_data_dir=str(instance_dir), instance_prompt="sks",
        train_text_encoder=True, max_train_steps=3, checkpointing_steps=2, validation_steps=100,
        num_validation_images=1)))
    # --multi_gpu on a machine without a GPU: two processes joined with gloo (`--cpu` would start one)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "sdstudio", "train", str(cfg)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("LoRA digests")]
    print("\n".join(lines))
    assert [re.match(r"LoRA digests at step (\d+)", line).group(1) for line in lines] == ["2", "3"]
    for line in lines:
        digests = re.findall(r"rank (\d) ([0-9a-f]{16})", line)
        assert [r for r, _ in digests] == ["0", "1"] and digests[0][1] == digests[1][1], line
    run = RunDir(tmp_path / "run")
    assert run.status()["state"] == "finished" and [c.step for c in run.checkpoints()] == [2, 3]
    assert done.stdout.count("finished at step 3") == 1  # only the main process reports
    assert all(m["images_per_s"] > 0 for m in run.metrics()) and len(run.metrics()) == 3
