"""Helpers shared by the studio tests: a fabricated run folder, a tiny dataset, a settings file."""

from __future__ import annotations

import json
from pathlib import Path

from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.paths import data_dir

PROMPTS = ("a red circle", "a blue square")


def make_run(root: Path, name: str = "demo-run", steps: tuple[int, ...] = (0, 10, 20),
             checkpoints: tuple[int, ...] = (10, 20), state: str = "finished") -> RunDir:
    """A run folder written with RunDir's own writers (flat-colour samples, made-up losses)."""
    from PIL import Image

    run = RunDir(root / name)
    run.write_config({"pretrained_model_name_or_path": "demo", "max_train_steps": steps[-1]}, {"version": "test"})
    for step in steps:
        for i, prompt in enumerate(PROMPTS):
            colour = ((step * 9 + i * 80) % 256, (i * 120 + 40) % 256, (255 - step * 5) % 256)
            run.add_sample(step, i, prompt, 7, Image.new("RGB", (32, 32), colour))
    for step in range(1, steps[-1] + 1):
        run.append_metrics({"step": step, "loss": round(0.5 / step, 4), "lr": 1e-4})
    for step in checkpoints:
        folder = run.checkpoint_path(step)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pytorch_lora_weights.safetensors").write_bytes(b"not read by these tests")
    run.write_status(state, steps[-1], steps[-1])
    return run


def make_dataset(folder: Path, count: int = 4, broken: bool = False) -> Path:
    """A few 32 px shapes from the shipped sample data (or files that are not images at all)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    src = data_dir() / "shapes"
    rows = [json.loads(line) for line in (src / "metadata.jsonl").read_text().splitlines()[:count]]
    for row in rows:
        if broken:
            (folder / row["file_name"]).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        else:
            Image.open(src / row["file_name"]).convert("RGB").resize((32, 32)).save(folder / row["file_name"])
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def write_settings(path: Path, model: Path, dataset: Path, **fields: object) -> Path:
    """A studio settings file whose train_config is a tiny run on the tiny model."""
    values = {"pretrained_model_name_or_path": str(model), "train_data_dir": str(dataset), "resolution": 32,
              "max_train_steps": 4, "validation_steps": 2, "checkpointing_steps": 2,
              "validation_prompts": list(PROMPTS), "num_validation_images": 1,
              "validation_num_inference_steps": 2, "learning_rate": 1e-3, **fields}
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (path.parent / "train.toml").write_text("\n".join(lines) + "\n")
    path.write_text('train_config = "train.toml"\n')
    return path


async def wait_for(pilot: object, condition: object, timeout: float = 60.0) -> None:
    """Let the app run until `condition()` holds (workers report through messages)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)  # type: ignore[attr-defined]
