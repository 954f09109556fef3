"""One large sample with its step, seed and loss; or two side by side to compare checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from sdstudio.tui.images import Picture


@dataclass(frozen=True)
class Shown:
    """What one side of the preview shows."""

    path: Path | None
    step: int
    seed: int | None
    loss: float | None
    prompt: str
    checkpoint: bool
    favourite: bool

    def caption(self) -> str:
        loss = f"{self.loss:.4f}" if self.loss is not None else "–"
        seed = self.seed if self.seed is not None else "–"
        marks = ("  ◆ checkpoint" if self.checkpoint else "  (no checkpoint)") + ("  ★" if self.favourite else "")
        return f"[b]step {self.step}[/b] · seed {seed} · loss {loss}{marks}"


class SamplePreview(Vertical):
    DEFAULT_CSS = """
    SamplePreview { width: 1fr; padding: 0 1; }
    SamplePreview #preview-caption { height: auto; }
    SamplePreview #preview-prompt { color: $text-muted; height: auto; max-height: 2; }
    SamplePreview #preview-images { height: 1fr; }
    SamplePreview #preview-images > Vertical { width: 1fr; height: 1fr; }
    SamplePreview .side-caption { height: 1; color: $text-muted; }
    SamplePreview Picture { width: 1fr; height: 1fr; }
    SamplePreview Picture > .picture-image { height: 100%; }
    SamplePreview #side-a { display: none; }
    SamplePreview.-compare #side-a { display: block; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.current: Shown | None = None
        self.pinned: Shown | None = None

    def compose(self) -> ComposeResult:
        yield Static("No samples yet.", id="preview-caption")
        yield Static("", id="preview-prompt")
        with Horizontal(id="preview-images"):
            with Vertical(id="side-a"):
                yield Static("", classes="side-caption", id="caption-a")
                yield Picture(None, large=True, id="picture-a")
            with Vertical(id="side-b"):
                yield Static("", classes="side-caption", id="caption-b")
                yield Picture(None, large=True, id="picture-b")

    def show(self, current: Shown | None, pinned: Shown | None = None) -> None:
        """Show `current`; with `pinned`, show it on the left for comparison."""
        if current == self.current and pinned == self.pinned:
            return
        self.current, self.pinned = current, pinned
        self.set_class(pinned is not None, "-compare")
        caption = self.query_one("#preview-caption", Static)
        prompt = self.query_one("#preview-prompt", Static)
        if current is None:
            caption.update("No samples yet: they appear here as the run writes them.")
            prompt.update("")
        else:
            caption.update(current.caption())
            prompt.update(current.prompt)
        if pinned is not None:
            self.query_one("#caption-a", Static).update(f"A: step {pinned.step}")
            self.query_one("#caption-b", Static).update(f"B: step {current.step if current else '–'}")
            self.query_one("#picture-a", Picture).show(pinned.path)
        else:
            self.query_one("#caption-b", Static).update("")
        self.query_one("#picture-b", Picture).show(current.path if current else None)
