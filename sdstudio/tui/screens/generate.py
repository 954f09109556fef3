"""Generate screen: prompt, sampler settings and LoRAs in; thumbnails, a large preview and PNGs out.

The engine's `Generator` keeps the base pipeline loaded between clicks and swaps LoRAs or
their scales without reloading, so a second generation starts at once. It runs in a thread
worker. Results stay in memory until Save writes them (PNG with A1111 `parameters`). "Grid"
is the tutorial's XY comparison: seeds down, a run's checkpoints across; it goes through the
engine's `run_comparison`, which writes every image and the labelled grid to a new folder.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Header, Input, Label, ProgressBar, Select, Static

from sdstudio.core.models import sampler_defaults as model_defaults
from sdstudio.tui.widgets.lora_list import LoraChoice, LoraList, find_loras
from sdstudio.tui.images import Picture
from sdstudio.tui.widgets.thumbgrid import ThumbGrid, TileSpec
from sdstudio.tui.screens.base import StudioScreen
from sdstudio.tui.widgets.footer import StudioFooter


class GenerateScreen(StudioScreen):
    """Sample the base model with LoRAs; save what is worth keeping."""

    AUTO_FOCUS = "#gen-prompt"  # the first keystroke lands in the prompt
    DEFAULT_CSS = """
    GenerateScreen #gen-body { height: 1fr; }
    GenerateScreen #gen-form { width: 44; padding: 0 1 0 0; }
    GenerateScreen .gen-row { height: 1; margin-bottom: 1; }
    GenerateScreen .gen-label { width: 10; color: $text-muted; }
    GenerateScreen .gen-label-short { width: 5; color: $text-muted; }
    GenerateScreen .gen-row Input, GenerateScreen .gen-row Select { width: 1fr; }
    GenerateScreen #gen-lora-add { min-width: 3; width: 3; }
    GenerateScreen #gen-loras { margin-bottom: 1; }
    GenerateScreen #gen-buttons { height: 1; }
    GenerateScreen #gen-buttons Button { width: auto; min-width: 0; margin-right: 2; }
    GenerateScreen #gen-results { width: 1fr; padding: 0 1; }
    GenerateScreen #gen-progress-row { height: 1; }
    GenerateScreen #gen-progress { width: 24; }
    GenerateScreen #gen-status { width: 1fr; padding-left: 1; }
    GenerateScreen #gen-preview { height: 1fr; }
    GenerateScreen #gen-thumbs { height: 9; }
    """
    BINDINGS = [
        Binding("ctrl+r", "generate", "Draw", id="generate.run", tooltip="Generate one image per seed"),
        Binding("ctrl+g", "grid", "Grid", id="generate.grid",
                tooltip="Seeds x checkpoints of the chosen run, as one labelled PNG"),
        Binding("ctrl+s", "save", "Save", id="generate.save", tooltip="Write the results to the output folder"),
    ]

    def __init__(self, model: str | Path | None = None, out_dir: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = str(model) if model else "demo"
        self.out_dir = str(out_dir) if out_dir else ""
        self.results: list[dict[str, Any]] = []  # {"item", "image", "label", "name", "saved": Path | None}
        self.generator: Any = None
        self._generator_model: str | None = None
        self._choices: dict[str, LoraChoice] = {}
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        from sdstudio.core.generation.generator import SCHEDULERS  # a plain table: no torch import

        defaults = model_defaults(self.model)
        with Horizontal(id="gen-body"):
            with VerticalScroll(id="gen-form"):
                yield _row("Model", Input(self.model, placeholder="demo, a folder or a .safetensors",
                                          compact=True, id="gen-model"))
                yield _row("Prompt", Input("", placeholder="what to draw (required)", compact=True,
                                           id="gen-prompt"))
                yield _row("Negative", Input("", placeholder="what to steer away from", compact=True,
                                             id="gen-negative"))
                yield _row("Seeds", Input("1-4", placeholder="1-4 or 1,5,9", compact=True, id="gen-seeds"))
                with Horizontal(classes="gen-row"):
                    yield Label("Steps", classes="gen-label")
                    yield Input(str(defaults["steps"]), type="integer", compact=True, id="gen-steps")
                    yield Label(" CFG ", classes="gen-label-short")
                    yield Input(str(defaults["guidance"]), type="number", compact=True, id="gen-guidance")
                with Horizontal(classes="gen-row"):
                    yield Label("Size", classes="gen-label")
                    yield Input(str(defaults["size"] or ""), type="integer", placeholder="native", compact=True,
                                id="gen-width")
                    yield Label("  x ", classes="gen-label-short")
                    yield Input(str(defaults["size"] or ""), type="integer", placeholder="native", compact=True,
                                id="gen-height")
                yield _row("Scheduler", Select([("model default", "default")] + [(name, name) for name in SCHEDULERS],
                                               value="default", allow_blank=False, compact=True,
                                               id="gen-scheduler"))
                with Horizontal(classes="gen-row"):
                    yield Label("LoRA", classes="gen-label")
                    yield Select([], prompt="pick a checkpoint or export", compact=True, id="gen-lora-pick")
                    yield Button("+", id="gen-lora-add", compact=True, tooltip="Add the picked LoRA")
                yield LoraList(id="gen-loras")
                yield _row("Grid run", Select([], prompt="seeds x its checkpoints", compact=True, id="gen-grid-run"))
                yield _row("Save to", Input(self.out_dir, placeholder=str(_default_out_dir()), compact=True,
                                            id="gen-out"))
                with Horizontal(id="gen-buttons"):
                    yield Button("Generate", id="gen-run", variant="primary", compact=True)
                    yield Button("Grid", id="gen-grid", compact=True)
                    yield Button("Save", id="gen-save", compact=True)
            with Vertical(id="gen-results"):
                with Horizontal(id="gen-progress-row"):
                    yield ProgressBar(total=100, id="gen-progress", show_eta=False)
                    yield Static("", id="gen-status")
                yield Picture(large=True, id="gen-preview")
                yield ThumbGrid(id="gen-thumbs")
        yield StudioFooter(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "Generate"
        self.refresh_choices()

    def on_screen_resume(self) -> None:
        self.refresh_choices()

    def refresh_choices(self) -> None:
        """Runs may have gained checkpoints since the screen was built."""
        from sdstudio.core.paths import runs_root
        from sdstudio.core.runs.run_dir import list_runs

        root = runs_root()
        self._choices = {str(c.path): c for c in find_loras(root)}
        self.query_one("#gen-lora-pick", Select).set_options([(c.label, key) for key, c in self._choices.items()])
        runs = [r for r in list_runs(root) if r.checkpoints()]
        self.query_one("#gen-grid-run", Select).set_options([(r.name, str(r.path)) for r in runs])

    # LoRAs
    @on(Button.Pressed, "#gen-lora-add")
    async def _add_lora(self) -> None:
        key = self.query_one("#gen-lora-pick", Select).value
        if key in self._choices:
            await self.query_one(LoraList).add(self._choices[key])

    async def add_lora(self, path: Path, scale: float = 1.0, label: str | None = None) -> None:
        """Add a LoRA file by path (also for files outside the runs folder)."""
        from sdstudio.core.lora.identity import identify

        await self.query_one(LoraList).add(LoraChoice(label or identify(path).label, Path(path)), scale)

    # reading the form
    def options(self) -> tuple[Any, list[Any]]:
        """The form as the engine's (GenerateOptions, [LoraSpec]); ValueError names the bad field."""
        from sdstudio.core.errors import SdstudioError
        from sdstudio.core.generation.generator import GenerateOptions, LoraSpec, parse_seeds

        def number(field: str, kind: type, optional: bool = False) -> Any:
            text = self.query_one(f"#gen-{field}", Input).value.strip()
            if optional and not text:
                return None
            try:
                value = kind(text)
            except ValueError:
                raise ValueError(f"{field}: '{text}' is not a valid {kind.__name__}") from None
            if value <= 0:
                raise ValueError(f"{field}: must be positive, got {text}")
            return value

        prompt = self.query_one("#gen-prompt", Input).value.strip()
        if not prompt:
            raise ValueError("prompt: type what to draw")
        try:
            seeds = parse_seeds(self.query_one("#gen-seeds", Input).value)
        except SdstudioError as exc:
            raise ValueError(str(exc).replace("--seeds", "seeds:")) from None
        scheduler = self.query_one("#gen-scheduler", Select).value
        opts = GenerateOptions(
            prompt=prompt, negative_prompt=self.query_one("#gen-negative", Input).value.strip(), seeds=seeds,
            steps=number("steps", int), guidance=number("guidance", float),
            scheduler=None if scheduler == "default" else str(scheduler),
            width=number("width", int, optional=True), height=number("height", int, optional=True))
        loras = [LoraSpec(path, scale, self._label(path)) for path, scale in self.query_one(LoraList).selected()]
        return opts, loras

    def _label(self, path: Path) -> str:
        from sdstudio.core.lora.identity import identify

        choice = self._choices.get(str(path))
        return choice.label if choice else identify(path).label

    def _checked_options(self) -> tuple[Any, list[Any]] | None:
        if self.busy:
            self.notify("still generating: wait for it to finish", severity="warning")
            return None
        try:
            return self.options()
        except ValueError as exc:
            self.notify(str(exc), title="Check the form", severity="error")
            return None

    def _start(self, total: int | None, text: str) -> None:
        self.busy = True
        self.query_one("#gen-progress", ProgressBar).update(total=total, progress=0)
        self.query_one("#gen-status", Static).update(text)

    @property
    def model_spec(self) -> str:
        return self.query_one("#gen-model", Input).value.strip() or "demo"

    # generation
    def action_generate(self) -> None:
        checked = self._checked_options()
        if checked is None:
            return
        opts, loras = checked
        self._start(None, f"generating {len(opts.seeds)} image(s)…")
        self._generate(self.model_spec, opts, loras)

    @on(Button.Pressed, "#gen-run")
    def _run_pressed(self) -> None:
        self.action_generate()

    def _generator_for(self, model: str) -> Any:
        """The loaded Generator, reused while the base model stays the same (runs in the worker)."""
        from sdstudio.core.generation.generator import Generator

        if self.generator is None or self._generator_model != model:
            if self.generator is not None:
                self.generator.close()
                self.generator = None
            self.app.call_from_thread(self.query_one("#gen-status", Static).update, f"loading {model} …")
            self.generator = Generator(model)
            self._generator_model = model
        return self.generator

    @work(thread=True, exclusive=True, group="generate")
    def _generate(self, model: str, opts: Any, loras: list[Any]) -> None:
        from sdstudio.core.errors import SdstudioError

        try:
            gen = self._generator_for(model)
            gen.pipe.set_progress_bar_config(disable=True)
            gen.set_loras(loras)
            bar = self.query_one("#gen-progress", ProgressBar)
            items = gen.generate(opts, on_step=lambda done, total: self.app.call_from_thread(
                bar.update, total=total, progress=done))
        except (SdstudioError, ValueError, OSError, RuntimeError) as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        results = [{"item": item, "image": item.image, "label": f"seed {item.seed}", "saved": None,
                    "name": f"{_slug(opts.prompt)}-seed{item.seed}"} for item in items]
        self.app.call_from_thread(self._show_results, results, f"{len(results)} image(s) · ctrl+s saves them")

    def _failed(self, message: str) -> None:
        self.busy = False
        self.query_one("#gen-progress", ProgressBar).update(total=100, progress=0)
        self.query_one("#gen-status", Static).update(f"[$error]{message.replace('[', chr(92) + '[')}[/]")
        self.notify(message, title="Generation failed", severity="error", timeout=10)

    async def _show_results(self, results: list[dict[str, Any]], text: str) -> None:
        self.busy = False
        self.results = results
        self.query_one("#gen-progress", ProgressBar).update(total=100, progress=100)
        self.query_one("#gen-status", Static).update(text)
        grid = self.query_one(ThumbGrid)
        await grid.set_tiles([TileSpec(str(i), r["label"]) for i, r in enumerate(results)])
        for index, result in enumerate(results):
            grid.set_thumbnail(index, result["image"])
        if results:
            self.query_one("#gen-preview").image = results[0]["image"]

    @on(ThumbGrid.Selected, "#gen-thumbs")
    def _thumb_selected(self, event: ThumbGrid.Selected) -> None:
        if 0 <= event.index < len(self.results):
            self.query_one("#gen-preview").image = self.results[event.index]["image"]

    # grid of seeds x checkpoints
    def action_grid(self) -> None:
        run = self.query_one("#gen-grid-run", Select).value
        if not isinstance(run, str):
            self.notify("Grid run: pick a run with checkpoints", severity="warning")
            return
        checked = self._checked_options()
        if checked is None:
            return
        from sdstudio.core.errors import SdstudioError
        from sdstudio.core.generation.compare import Variant, lora_specs

        opts, loras = checked
        try:
            variants = [Variant(spec.label, self.model_spec, tuple(loras) + (spec,)) for spec in lora_specs(run)]
        except SdstudioError as exc:
            self.notify(str(exc), severity="error")
            return
        out = self.out_folder() / f"grid-{Path(run).name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self._start(len(variants) * len(opts.seeds), f"grid: {len(opts.seeds)} seeds x {len(variants)} checkpoints…")
        self._grid(self.model_spec, opts, variants, out)

    @on(Button.Pressed, "#gen-grid")
    def _grid_pressed(self) -> None:
        self.action_grid()

    @work(thread=True, exclusive=True, group="generate")
    def _grid(self, model: str, opts: Any, variants: list[Any], out: Path) -> None:
        from PIL import Image

        from sdstudio.core.errors import SdstudioError
        from sdstudio.core.generation.compare import run_comparison

        bar = self.query_one("#gen-progress", ProgressBar)
        done = [0]

        def on_image(_variant: Any, _item: Any, _path: Path) -> None:
            done[0] += 1
            self.app.call_from_thread(bar.update, progress=done[0])

        try:
            gen = self._generator_for(model)
            gen.pipe.set_progress_bar_config(disable=True)
            comparison = run_comparison(variants, opts, out, grid=True, on_image=on_image,
                                        generator_factory=lambda _model: gen)
            with Image.open(comparison.grid) as im:
                sheet = im.convert("RGB")
        except (SdstudioError, ValueError, OSError, RuntimeError) as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        result = {"item": None, "image": sheet, "label": "grid", "saved": comparison.grid, "name": "grid"}
        self.app.call_from_thread(self._show_results, [result], f"grid and its images saved in {out}")

    # saving
    def out_folder(self) -> Path:
        typed = self.query_one("#gen-out", Input).value.strip()
        return Path(typed).expanduser() if typed else _default_out_dir()

    def action_save(self) -> None:
        from sdstudio.core.generation.generator import save_png

        pending = [r for r in self.results if r["saved"] is None]
        if not pending:
            self.notify("nothing new to save" if self.results else "generate something first", severity="warning")
            return
        folder = self.out_folder()
        try:
            for result in pending:
                result["saved"] = save_png(result["item"], _free_name(folder, result["name"]))
        except OSError as exc:
            self.notify(f"could not save to {folder}: {exc}", severity="error")
            return
        self.notify(f"saved {len(pending)} PNG(s) to {folder}")

    @on(Button.Pressed, "#gen-save")
    def _save_pressed(self) -> None:
        self.action_save()


def _row(label: str, widget: Any) -> Horizontal:
    return Horizontal(Label(label, classes="gen-label"), widget, classes="gen-row")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40].lower() or "image"


def _free_name(folder: Path, stem: str) -> Path:
    """`stem.png` in `folder`, or `stem-2.png`... when taken: saving never overwrites."""
    path, n = folder / f"{stem}.png", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}.png", n + 1
    return path


def _default_out_dir() -> Path:
    from sdstudio.core.paths import runs_root

    return runs_root() / "generated"

