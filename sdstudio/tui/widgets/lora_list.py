"""LoRAs to apply, each with its own scale slider; choices come from the runs on disk.

`find_loras` lists every run's checkpoints and exports (the run-directory contract), so what
the Train and Checkpoints screens produced is one pick away on the Generate screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label

from sdstudio.tui.widgets.slider import FloatSlider


@dataclass(frozen=True)
class LoraChoice:
    label: str  # run, step and kind, what tells them apart first: "step 400 checkpoint · my-run"
    path: Path  # a .safetensors file


def find_loras(root: Path) -> list[LoraChoice]:
    """Every checkpoint and export of the runs under `root`, newest run first."""
    from sdstudio.core.runs.run_dir import list_runs

    from sdstudio.core.lora.identity import identify

    from sdstudio.core.full.checkpoint_model import is_full_run

    found: list[LoraChoice] = []
    for run in list_runs(root):
        if is_full_run(run):
            continue  # a full fine-tune's checkpoints are models (the model field takes them)
        for cp in reversed(run.checkpoints()):
            found.append(LoraChoice(identify(cp.weights).label, cp.weights))
        if run.exports_dir.is_dir():
            for export in sorted(run.exports_dir.glob("*.safetensors")):
                found.append(LoraChoice(identify(export).label, export))
    return found


class LoraRow(Horizontal):
    DEFAULT_CSS = """
    LoraRow { height: 1; }
    LoraRow > Label { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    LoraRow > FloatSlider { width: 24; }
    LoraRow > Button { min-width: 3; width: 3; height: 1; border: none; }
    """

    def __init__(self, choice: LoraChoice, scale: float = 1.0) -> None:
        super().__init__()
        self.choice = choice
        self.initial_scale = scale

    def compose(self) -> ComposeResult:
        label = Label(self.choice.label.replace("[", r"\["), classes="lora-label")
        label.tooltip = str(self.choice.path)  # the whole story when the row cuts the run's name
        yield label
        yield FloatSlider(self.initial_scale, minimum=-1.0, maximum=2.0, step=0.05, coarse_step=0.25)
        yield Button("✕", classes="lora-remove", compact=True, tooltip="Remove this LoRA")

    @property
    def scale(self) -> float:
        return self.query_one(FloatSlider).value

    @on(Button.Pressed, ".lora-remove")
    async def _remove(self) -> None:
        owner = self.parent
        await self.remove()
        if isinstance(owner, LoraList):
            owner.sync_empty()


class LoraList(Vertical):
    """The chosen LoRAs; `selected()` gives (path, scale) pairs in order."""

    DEFAULT_CSS = """
    LoraList { height: auto; }
    LoraList > .lora-empty { color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Label("no LoRA: the base model alone", classes="lora-empty")

    async def add(self, choice: LoraChoice, scale: float = 1.0) -> None:
        if any(row.choice.path == choice.path for row in self.query(LoraRow)):
            return
        await self.mount(LoraRow(choice, scale))
        self.sync_empty()

    def sync_empty(self) -> None:
        self.query_one(".lora-empty").display = not self.query(LoraRow)

    def selected(self) -> list[tuple[Path, float]]:
        return [(row.choice.path, row.scale) for row in self.query(LoraRow)]
