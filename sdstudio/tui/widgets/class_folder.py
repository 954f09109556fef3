"""The Dataset screen's DreamBooth class-folder panel: prior-preservation class images made
by the base model (the engine's `ensure_class_images`), in a worker, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, ProgressBar


class ClassFolderPanel(Vertical):
    DEFAULT_CSS = """
    ClassFolderPanel { height: auto; }
    ClassFolderPanel #ds-class-row { height: 1; }
    ClassFolderPanel #ds-class-row Input, ClassFolderPanel #ds-class-dir { width: 1fr; }
    ClassFolderPanel #ds-class-count { width: 7; }
    ClassFolderPanel #ds-class-count-label { width: auto; padding: 0 1; color: $text-muted; }
    ClassFolderPanel #ds-class-start { width: auto; min-width: 0; margin-right: 2; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal(id="ds-class-row"):
            yield Input("", placeholder="class prompt, e.g. a photo of a heart", compact=True, id="ds-class-prompt")
            yield Label("count", id="ds-class-count-label")  # keeps the prompt's placeholder off the number
            yield Input("100", type="integer", compact=True, id="ds-class-count", tooltip="how many class images")
        yield Input("", placeholder="class folder (default: <dataset>-class next to it)", compact=True,
                    id="ds-class-dir")
        yield Button("Generate class images", id="ds-class-start", compact=True)
        yield ProgressBar(total=100, id="ds-class-progress", show_eta=False)
        yield Label("", id="ds-class-phase")  # "class images 16/64 · ETA 2:31" while they are drawn

    def fields(self, default_dir: Path | None) -> dict[str, Any]:
        """class_data_dir, class_prompt and num_class_images as typed (the folder defaults to `default_dir`)."""
        typed = self.query_one("#ds-class-dir", Input).value.strip()
        prompt = self.query_one("#ds-class-prompt", Input).value.strip()
        try:
            count = max(1, int(self.query_one("#ds-class-count", Input).value))
        except ValueError:
            count = 100
        folder = Path(typed).expanduser() if typed else default_dir
        return {"class_data_dir": str(folder) if folder else None, "class_prompt": prompt, "num_class_images": count}

    @on(Button.Pressed, "#ds-class-start")
    def _start_pressed(self) -> None:
        screen: Any = self.screen
        fields = screen.class_fields()
        if not fields["class_prompt"]:
            self.notify("type a class prompt first, e.g. 'a photo of a heart'", severity="warning")
            self.query_one("#ds-class-prompt", Input).focus()
            return
        if not fields["class_data_dir"]:
            self.notify("open the instance folder first (or type a class folder)", severity="warning")
            return
        self.query_one("#ds-class-progress", ProgressBar).update(total=fields["num_class_images"], progress=0)
        self._make_class_images(fields, screen.model, screen.resolution)

    @work(thread=True, exclusive=True, group="dataset-class")
    def _make_class_images(self, fields: dict[str, Any], model: str, resolution: int) -> None:
        from sdstudio.core.training.class_images import count_class_images, ensure_class_images
        from sdstudio.core.config import TrainConfig
        from sdstudio.core.errors import SdstudioError
        from sdstudio.core.models import load_pipeline, resolve_base_model
        from sdstudio.core.progress import reporting_to

        folder = Path(fields["class_data_dir"])

        def progress(_line: str) -> None:
            self.app.call_from_thread(self._class_progress, count_class_images(folder))

        try:
            folder.mkdir(parents=True, exist_ok=True)
            cfg = TrainConfig(pretrained_model_name_or_path=model, resolution=resolution, **fields)
            progress("")
            if count_class_images(folder) < cfg.num_class_images:
                pipe = load_pipeline(resolve_base_model(model))
                pipe.set_progress_bar_config(disable=True)
                with reporting_to(lambda event: self.app.call_from_thread(self._show_phase, event)):
                    ensure_class_images(cfg, pipe, progress)
        except (SdstudioError, OSError, ValueError) as exc:
            self.app.call_from_thread(self.notify, f"class images: {exc}", severity="error")
            return
        progress("")
        self.app.call_from_thread(self.notify, f"{count_class_images(folder)} class images in {folder}")

    def _show_phase(self, event: Any) -> None:
        self.query_one("#ds-class-phase", Label).update("" if event.finished else event.line())

    def _class_progress(self, count: int) -> None:
        self.query_one("#ds-class-progress", ProgressBar).update(progress=count)
