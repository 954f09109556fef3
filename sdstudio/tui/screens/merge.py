"""Merge screen: choose models and a method, move the multiplier, watch the preview follow.

The preview never re-reads the models: the engine's `PreviewMerger` holds A, B (and C, or the
LoRA deltas) in memory and rewrites a live pipeline's weights in place for each multiplier.
Slider moves are debounced, only one preview renders at a time, and the last image stays on
screen until the next one is ready. Save runs the streaming file merge with a progress bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Button, Header, Input, Label, ProgressBar, Select, Static

from sdstudio.core.catalog import merge_candidates
from sdstudio.tui.images import Picture
from sdstudio.tui.widgets.model_picker import ModelPicker
from sdstudio.tui.widgets.slider import FloatSlider
from sdstudio.tui.screens.base import StudioScreen
from sdstudio.tui.widgets.footer import StudioFooter

DEBOUNCE_S = 0.25
METHODS = (  # (label, method, needs C, slider range, what the slider means)
    ("weighted sum: (1-M)·A + M·B", "weighted-sum", False, (0.0, 1.0), "multiplier M"),
    ("add difference: A + M·(B - C)", "add-difference", True, (0.0, 1.0), "multiplier M"),
    ("LoRA fuse: A + scale·LoRA (B)", "lora-fuse", False, (-1.0, 2.0), "LoRA scale"),
)
_METHOD = {m[1]: m for m in METHODS}


class MergeScreen(StudioScreen):
    """Merge two or three models, or fuse a LoRA, at a multiplier chosen by eye."""

    AUTO_FOCUS = "#mg-b Select"  # A is the demo already: B is the first choice to make
    DEFAULT_CSS = """
    MergeScreen #mg-inputs { height: auto; padding: 0 1; }
    MergeScreen .mg-row { height: 1; }
    MergeScreen .mg-label { width: 10; color: $text-muted; }
    MergeScreen .mg-row Input, MergeScreen .mg-row Select { width: 1fr; }
    MergeScreen #mg-slider-row { height: 1; margin: 1 0; }
    MergeScreen #mg-slider-label { width: 16; padding: 0 1; text-style: bold; }
    MergeScreen #mg-body { height: 1fr; }
    MergeScreen #mg-preview-col { width: 1fr; padding: 0 1; }
    MergeScreen #mg-preview { height: 1fr; }
    MergeScreen #mg-preview-status { height: 1; }
    MergeScreen #mg-side { width: 40; padding: 0 1; }
    MergeScreen #mg-side > Label { margin-top: 1; }
    MergeScreen #mg-save { width: auto; min-width: 0; margin: 1 0 0 0; }
    MergeScreen #mg-save-progress { margin-top: 1; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="merge.save", tooltip="Write the merged model with the streaming merge"),
        Binding("ctrl+r", "reload", "Load", id="merge.reload",
                tooltip="Load A/B/C again (after changing the files)"),
        Binding("ctrl+l", "focus_slider", "Slider", id="merge.focus_slider", tooltip="Move focus to the multiplier"),
    ]

    def __init__(self, model_a: str | Path | None = None, model_b: str | Path | None = None,
                 model_c: str | Path | None = None, method: str = "weighted-sum", multiplier: float = 0.3,
                 prompt: str = "", seed: int = 0, steps: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if method not in _METHOD:
            raise ValueError(f"unknown merge method {method!r} (use one of {', '.join(_METHOD)})")
        self.initial = {"a": str(model_a or "demo"), "b": str(model_b or ""), "c": str(model_c or ""),
                        "method": method, "multiplier": multiplier, "prompt": prompt, "seed": seed, "steps": steps}
        self._timer: Timer | None = None
        self._wanted: float | None = None  # the multiplier the newest preview should show
        self._rendering = False
        self._live: Any = None  # (key, pipeline, merger): built once per A/B/C/method
        self.preview_multiplier: float | None = None  # what the image on screen shows
        self.saving = False
        self.lora_switch_note = ""

    def compose(self) -> ComposeResult:
        yield Header()
        from sdstudio.core.models import sampler_defaults as model_defaults

        self.defaults = model_defaults(self.initial["a"])
        lo, hi = _METHOD[self.initial["method"]][3]
        with Vertical(id="mg-inputs"):
            yield _row("A (base)", Input(self.initial["a"], placeholder="demo, a folder or a .safetensors",
                                         compact=True, id="mg-a"))
            candidates = merge_candidates()
            yield _row("B", ModelPicker(candidates, self.initial["b"], prompt="choose the model to merge in, or a LoRA",
                                        id="mg-b"))
            yield _row("C", ModelPicker(candidates, self.initial["c"], prompt="the model to subtract",
                                        id="mg-c"), row_id="mg-c-row")
            yield _row("Method", Select([(m[0], m[1]) for m in METHODS], value=self.initial["method"],
                                        allow_blank=False, compact=True, id="mg-method"))
        with Horizontal(id="mg-slider-row"):
            yield Label(_METHOD[self.initial["method"]][4], id="mg-slider-label")
            yield FloatSlider(self.initial["multiplier"], minimum=lo, maximum=hi, step=0.01, coarse_step=0.1,
                              id="mg-slider")
        with Horizontal(id="mg-body"):
            with Vertical(id="mg-preview-col"):
                yield Static("preview: choose B, then move the slider", id="mg-preview-status")
                yield Picture(large=True, id="mg-preview")
            with Vertical(id="mg-side"):
                yield Label("[b]Preview[/b] (fixed prompt and seed)")
                yield _row("Prompt", Input(self.initial["prompt"] or "a red circle on a white background",
                                           compact=True, id="mg-prompt"))
                yield _row("Seed", Input(str(self.initial["seed"]), type="integer", compact=True, id="mg-seed"))
                yield _row("Steps", Input(str(self.initial["steps"] or self.defaults["steps"]), type="integer",
                                          compact=True, id="mg-steps"))
                yield Label("[b]Save[/b] (streaming merge)")
                yield _row("File", Input("", placeholder="empty: a new file in <runs>/merges/",
                                         compact=True, tooltip="A name ending in .safetensors writes an A1111 single "
                                         "file; any other name writes a diffusers folder", id="mg-out"))
                yield _row("Dtype", Select([("fp16", "fp16"), ("fp32", "fp32"), ("bf16", "bf16")], value="fp16",
                                           allow_blank=False, compact=True, id="mg-dtype"))
                yield Button("Save merge", id="mg-save", variant="primary", compact=True)
                yield ProgressBar(total=100, id="mg-save-progress", show_eta=False)
                yield Static("", id="mg-save-status")
        yield StudioFooter(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "Merge"
        self._sync_method()
        if self.initial["b"]:
            self.use_b(self.initial["b"])

    # inputs
    @property
    def method(self) -> str:
        return str(self.query_one("#mg-method", Select).value)

    @property
    def multiplier(self) -> float:
        return self.query_one("#mg-slider", FloatSlider).value

    def inputs(self) -> dict[str, Any]:
        """A, B, C, method as typed; ValueError names what is missing."""
        a = self.query_one("#mg-a", Input).value.strip()
        b, c = (self.query_one(f"#mg-{k}", ModelPicker).value for k in "bc")
        method = self.method
        if not a:
            raise ValueError("A: choose the base model")
        if not b:
            raise ValueError("B: choose the second model" if method != "lora-fuse" else "B: choose the LoRA file")
        if _METHOD[method][2] and not c:
            raise ValueError("C: add difference needs the model to subtract (e.g. the base of B)")
        return {"a": a, "b": b, "c": c if _METHOD[method][2] else None, "method": method}

    def preview_settings(self) -> dict[str, Any]:
        def integer(field: str, default: int) -> int:
            try:
                return int(self.query_one(f"#mg-{field}", Input).value)
            except ValueError:
                return default

        return {"prompt": self.query_one("#mg-prompt", Input).value.strip() or "a picture",
                "seed": integer("seed", 0), "steps": max(1, integer("steps", 20)),
                "guidance": self.defaults["guidance"]}

    @on(Select.Changed, "#mg-method")
    def _method_changed(self) -> None:
        self._sync_method()
        self._live = None
        self.request_preview()

    def _sync_method(self) -> None:
        _, method, needs_c, (lo, hi), meaning = _METHOD[self.method]
        self.query_one("#mg-c-row").display = needs_c
        self.query_one("#mg-slider-label", Label).update(meaning)
        slider = self.query_one("#mg-slider", FloatSlider)
        slider.minimum, slider.maximum = lo, hi
        slider.value = min(hi, max(lo, slider.value if method != "lora-fuse" else max(slider.value, 1.0)))
        slider.refresh()

    @on(ModelPicker.Changed, "#mg-b")
    def _b_chosen(self, event: ModelPicker.Changed) -> None:
        self.use_b(event.value)

    def use_b(self, value: str) -> None:
        """B chosen: a LoRA file switches the method to LoRA fuse, and the status line says so."""
        from sdstudio.core.merge.sources import is_lora_file

        picker = self.query_one("#mg-b", ModelPicker)
        if picker.value != value:
            picker.value = value
        if value and is_lora_file(value) and self.method != "lora-fuse":
            with self.prevent(Select.Changed):
                self.query_one("#mg-method", Select).value = "lora-fuse"
            self._sync_method()
            self.notify("B is a LoRA file: the method is now LoRA fuse", title="LoRA fuse")
            self.lora_switch_note = "B is a LoRA: method switched to LoRA fuse · "
        else:
            self.lora_switch_note = ""
        self._models_changed()

    @on(Input.Submitted, "#mg-a")
    @on(ModelPicker.Changed, "#mg-c")
    def _models_changed(self) -> None:
        self._live = None
        self.request_preview()

    @on(Input.Submitted, "#mg-prompt, #mg-seed, #mg-steps")
    def _settings_changed(self) -> None:
        self.request_preview()

    def action_reload(self) -> None:
        self._models_changed()
        self.notify("Loading A, B and C again for the preview")

    def action_focus_slider(self) -> None:
        self.query_one("#mg-slider").focus()

    # the debounced preview
    @on(FloatSlider.Changed, "#mg-slider")
    def _slider_moved(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self.request_preview)

    def request_preview(self) -> None:
        """Ask for a preview at the slider's value; renders now, or after the one in progress."""
        try:
            inputs = self.inputs()
        except ValueError:
            return
        self._wanted = self.multiplier
        if self._rendering:
            return
        self._rendering = True
        self._status(f"rendering {_METHOD[inputs['method']][4]} = {self._wanted:.2f} …")
        self._render_preview(inputs, self._wanted, self.preview_settings())

    @work(thread=True, group="merge-preview")
    def _render_preview(self, inputs: dict[str, Any], multiplier: float, settings: dict[str, Any]) -> None:
        from sdstudio.core.errors import SdstudioError

        try:
            live = self._live_merger(inputs)
            live[2].apply(multiplier)
            image = _render(live[1], settings)
        except (SdstudioError, ValueError, OSError) as exc:
            self.app.call_from_thread(self._preview_failed, str(exc))
            return
        self.app.call_from_thread(self._preview_ready, image, multiplier, inputs)

    def _live_merger(self, inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """The pipeline and merger for these inputs, loaded on the first preview (in the worker)."""
        key = tuple(sorted(inputs.items()))
        if self._live is None or self._live[0] != key:
            from sdstudio.core.merge.preview import PreviewMerger
            from sdstudio.core.models import load_pipeline, resolve_base_model

            self.app.call_from_thread(self._status, "loading the models for the preview …")
            pipe = load_pipeline(resolve_base_model(inputs["a"]))
            pipe.set_progress_bar_config(disable=True)
            if inputs["method"] == "lora-fuse":  # no B: the multiplier scales the LoRA
                merger = PreviewMerger(pipe, loras=[(inputs["b"], 1.0)])
            else:
                merger = PreviewMerger(pipe, inputs["b"], inputs["c"], method=inputs["method"])
            self._live = (key, pipe, merger)
        return self._live

    def _preview_ready(self, image: Any, multiplier: float, inputs: dict[str, Any]) -> None:
        self._rendering = False
        self.query_one("#mg-preview").image = image
        self.preview_multiplier = multiplier
        self._status(f"{self.lora_switch_note}preview at {_METHOD[inputs['method']][4]} = {multiplier:.2f}")
        if self._wanted is not None and self._wanted != multiplier:
            self.request_preview()  # the slider moved while this one rendered

    def _preview_failed(self, message: str) -> None:
        self._rendering = False
        self._live = None
        self._status(f"[$error]{_escape(message)}[/]")
        self.notify(message, title="Preview failed", severity="error", timeout=10)

    def _status(self, text: str) -> None:
        self.query_one("#mg-preview-status", Static).update(text)

    # saving with the streaming merge
    def action_save(self) -> None:
        if self.saving:
            self.notify("a merge is being written already", severity="warning")
            return
        try:
            inputs = self.inputs()
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        out = self.query_one("#mg-out", Input).value.strip() or str(default_output(inputs, self.multiplier))
        self.saving = True
        self.query_one("#mg-save-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#mg-save-status", Static).update(f"writing {out} …")
        self._save(inputs, self.multiplier, Path(out).expanduser(), str(self.query_one("#mg-dtype", Select).value))

    def on_unmount(self) -> None:
        self._live = None

    @on(Button.Pressed, "#mg-save")
    def _save_pressed(self) -> None:
        self.action_save()

    @work(thread=True, group="merge-save")
    def _save(self, inputs: dict[str, Any], multiplier: float, out: Path, dtype: str) -> None:
        from sdstudio.core.errors import SdstudioError
        from sdstudio.core.merge.merger import merge_files

        bar = self.query_one("#mg-save-progress", ProgressBar)

        shown = [-1]

        def progress(done_bytes: int, total_bytes: int) -> None:
            percent = done_bytes * 100 // max(1, total_bytes)
            if percent != shown[0]:  # one repaint per percent, not one per tensor
                shown[0] = percent
                self.app.call_from_thread(bar.update, total=100, progress=percent)

        fmt = "single-file" if out.suffix.lower() == ".safetensors" else "diffusers"
        try:
            if inputs["method"] == "lora-fuse":
                written = merge_files(inputs["a"], out, loras=[(inputs["b"], multiplier)], dtype=dtype, fmt=fmt,
                                      progress=progress)
            else:
                written = merge_files(inputs["a"], out, inputs["b"], inputs["c"], method=inputs["method"],
                                      multiplier=multiplier, dtype=dtype, fmt=fmt, progress=progress)
        except (SdstudioError, ValueError, OSError) as exc:
            self.app.call_from_thread(self._save_done, None, str(exc))
            return
        self.app.call_from_thread(self._save_done, Path(written or out), "")

    def _save_done(self, path: Path | None, error: str) -> None:
        self.saving = False
        status = self.query_one("#mg-save-status", Static)
        if path is None:
            status.update(f"[$error]{_escape(error)}[/]")
            self.notify(error, title="Merge failed", severity="error", timeout=10)
            return
        status.update(f"saved {path}")
        self.notify(f"merged model written to {path}")


def default_output(inputs: dict[str, Any], multiplier: float) -> Path:
    """Where Save writes when no file is named: a new file under the runs folder's merges/."""
    from sdstudio.core.paths import runs_root

    def stem(spec: str | None) -> str:
        return Path(spec).stem if spec else ""

    what = {"weighted-sum": "ws", "add-difference": "ad", "lora-fuse": "lora"}[inputs["method"]]
    name = f"{stem(inputs['a'])}+{stem(inputs['b'])}" + (f"-{stem(inputs['c'])}" if inputs.get("c") else "")
    base = runs_root() / "merges" / f"{name}-{what}{multiplier:.2f}"
    out, n = base.parent / f"{base.name}.safetensors", 1  # not with_suffix: "0.30" is no suffix
    while out.exists():
        n += 1
        out = base.parent / f"{base.name}-{n}.safetensors"
    return out


def _row(label: str, widget: Any, row_id: str | None = None) -> Horizontal:
    return Horizontal(Label(label, classes="mg-label"), widget, classes="mg-row", id=row_id)


def _render(pipe: Any, settings: dict[str, Any]) -> Any:
    """One image at the fixed prompt and seed, so only the multiplier changes between previews."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(settings["seed"])
    with torch.no_grad():
        return pipe(settings["prompt"], num_inference_steps=settings["steps"], guidance_scale=settings["guidance"],
                    generator=generator).images[0]


def _escape(text: str) -> str:
    return text.replace("[", r"\[")
