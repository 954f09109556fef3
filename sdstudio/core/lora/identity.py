"""What a LoRA file is, in words: its run, its step and its kind (checkpoint or export).

Run names are long and alike ("dreambooth-20261205-1402…"), so every label leads with what
tells two files of one run apart (the step and the kind) and ends with the run, which a
narrow column may cut. Read from the run-directory layout alone (runs/run_dir.py): no file
is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sdstudio.core.runs.run_dir import LORA_WEIGHTS_NAME

_CKPT_DIR = re.compile(r"^step-(\d+)$")
_EXPORT_STEP = re.compile(r"-step(\d+)(?:-kohya)?$")


@dataclass(frozen=True)
class LoraIdentity:
    run: str | None  # the run folder's name; None for a file outside any run
    step: int | None
    kind: str  # "checkpoint", "export" or "file"
    name: str  # the file's own name (stem), for a file outside any run

    @property
    def short(self) -> str:
        """"step 400 checkpoint", "step 400 export", or the file's name."""
        if self.step is None:
            return self.name if self.kind == "file" else f"{self.kind} {self.name}"
        return f"step {self.step} {self.kind}"

    @property
    def label(self) -> str:
        """One line: "step 400 checkpoint · my-run" (what matters first)."""
        return f"{self.short} · {self.run}" if self.run else self.short


def identify(path: str | Path) -> LoraIdentity:
    """`<run>/checkpoints/step-N/pytorch_lora_weights.safetensors` is run's step N checkpoint,
    `<run>/exports/<name>-stepN.safetensors` its step N export; anything else is a file."""
    p = Path(path)
    parent = p.parent
    ckpt = _CKPT_DIR.match(parent.name)
    if ckpt and p.name == LORA_WEIGHTS_NAME and parent.parent.name == "checkpoints":
        return LoraIdentity(parent.parent.parent.name, int(ckpt.group(1)), "checkpoint", p.stem)
    if ckpt and p.name.endswith("-kohya.safetensors") and parent.parent.name == "checkpoints":
        return LoraIdentity(parent.parent.parent.name, int(ckpt.group(1)), "export", p.stem)
    if parent.name == "exports" and (parent.parent / "run.toml").exists():
        step = _EXPORT_STEP.search(p.stem)
        return LoraIdentity(parent.parent.name, int(step.group(1)) if step else None, "export", p.stem)
    return LoraIdentity(None, None, "file", p.stem)
