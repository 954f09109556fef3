""""Mask all" and "Crop all to subject" from the Dataset screen: a pass over the folder in a
worker, its result to look through, and nothing written before it is accepted.

Mask all asks for the subject (prompt) and a masker (`demo`, or `clipseg:PATH` where that is
installed); crop all uses the masks the folder has. The pass and the writes are
`sdstudio.core.masks.batch`; this screen shows progress, the count and mean coverage, and each
image with its proposed mask or crop. ctrl+s (or Accept) writes, Escape cancels: a running
pass stops and the folder stays as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Header, Input, Label, OptionList, ProgressBar, Select, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from sdstudio.core.masks import batch
from sdstudio.core.masks.crop_edit import describe
from sdstudio.tui.crop_preview import marked_original, mask_overlay
from sdstudio.tui.images import Picture
from sdstudio.tui.screens.base import StudioScreen
from sdstudio.tui.widgets.footer import StudioFooter

MASKS, CROPS = "masks", "crops"
PREVIEW_PX = 160


def default_prompt(folder: Path, captioned: bool) -> str:
    """A DreamBooth folder is usually named for its subject ("pink-heart" -> "pink heart")."""
    return "" if captioned else folder.name.replace("-", " ").replace("_", " ")


class MaskBatchScreen(StudioScreen):
    """Dismisses with a line saying what was written (None when nothing was)."""

    DEFAULT_CSS = """
    MaskBatchScreen #mb-setup { height: 1; margin-bottom: 1; }
    MaskBatchScreen #mb-setup Label { padding: 0 1; }
    MaskBatchScreen #mb-prompt { width: 2fr; }
    MaskBatchScreen #mb-model { width: 1fr; }
    MaskBatchScreen #mb-mode { width: 13; }
    MaskBatchScreen #mb-setup Button { width: auto; min-width: 0; margin-left: 1; }
    MaskBatchScreen #mb-status { height: auto; padding: 0 1; }
    MaskBatchScreen #mb-bar { padding: 0 1; }
    MaskBatchScreen #mb-result { height: 1fr; display: none; }
    MaskBatchScreen #mb-result.ready { display: block; }
    MaskBatchScreen #mb-list { width: 32; height: 1fr; }
    MaskBatchScreen #mb-pic { width: 24; height: 12; }
    MaskBatchScreen #mb-side { padding: 0 1; }
    MaskBatchScreen #mb-buttons { height: 1; margin-top: 1; }
    MaskBatchScreen #mb-buttons Button { width: auto; min-width: 0; margin-right: 2; }
    """
    BINDINGS = [
        Binding("ctrl+s", "accept", "Accept", id="mask_batch.accept"),
        Binding("escape", "cancel", "Cancel", id="mask_batch.cancel"),
    ]

    def __init__(self, kind: str, folder: Path, names: list[str], *, prompt: str = "", masker: str = "demo",
                 bucket_resolution: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind, self.folder, self.names = kind, folder, names
        self.initial_prompt, self.initial_masker = prompt, masker
        self.bucket_resolution = bucket_resolution  # crop all: boxes at each image's bucket's aspect, else square
        self.proposal: batch.Proposal | None = None
        self.listed: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="mb-setup"):
            yield Label("subject")
            yield Input(self.initial_prompt, placeholder="what to mask, e.g. the pink heart", compact=True,
                        id="mb-prompt")
            yield Label("model")
            yield Input(self.initial_masker, placeholder="demo or clipseg:PATH", compact=True, id="mb-model")
            yield Select([("fill", False), ("replace", True)], value=False, allow_blank=False, compact=True,
                         id="mb-mode")
            yield Button("Run", id="mb-run", variant="primary", compact=True)
        yield Static("", id="mb-status")
        yield ProgressBar(total=max(1, len(self.names)), show_eta=False, id="mb-bar")
        with Horizontal(id="mb-result"):
            yield OptionList(id="mb-list")
            with Vertical(id="mb-side"):
                yield Picture(id="mb-pic")
                yield Static("", id="mb-detail")
                with Horizontal(id="mb-buttons"):
                    yield Button("Accept", id="mb-accept", variant="primary", compact=True, action="screen.accept")
                    yield Button("Cancel", id="mb-cancel", compact=True, action="screen.cancel")
        yield StudioFooter(compact=True)

    def on_mount(self) -> None:
        what = "Mask all" if self.kind == MASKS else "Crop all to subject"
        self.sub_title = f"{what} · {self.folder.name}"
        if self.kind == MASKS:
            self.query_one("#mb-status", Static).update(
                f"{len(self.names)} images · fill keeps existing masks, replace remakes them · "
                "Enter runs; nothing is written before you accept")
            self.query_one("#mb-prompt", Input).focus()
        else:
            self.query_one("#mb-setup").display = False
            self.start()

    @on(Input.Submitted)
    @on(Button.Pressed, "#mb-run")
    def start(self) -> None:
        """Run the pass (again): the earlier result, if any, is dropped."""
        self.proposal = None
        self.query_one("#mb-result").remove_class("ready")
        self.query_one("#mb-bar", ProgressBar).update(total=max(1, len(self.names)), progress=0)
        if self.kind == MASKS:
            prompt = self.query_one("#mb-prompt", Input).value.strip()
            spec = self.query_one("#mb-model", Input).value.strip()
            if not prompt or not spec:
                self.notify("type the subject to mask (e.g. the pink heart) and a masker (demo, or clipseg:PATH)",
                            severity="warning")
                return
            self.set_focus(None)
            self._status(f"masking {len(self.names)} images with {escape(spec)} …")
            self._mask(spec, prompt, bool(self.query_one("#mb-mode", Select).value))
        else:
            self._status(f"finding the subject's box in {len(self.names)} images …")
            self._crop()

    def _status(self, text: str) -> None:
        self.query_one("#mb-status", Static).update(text)

    def _progress(self, done: int, total: int) -> None:
        self.app.call_from_thread(self.query_one("#mb-bar", ProgressBar).update, total=total, progress=done)

    @work(thread=True, exclusive=True, group="mask-batch")
    def _mask(self, spec: str, prompt: str, replace: bool) -> None:
        from sdstudio.core.errors import SdstudioError
        from sdstudio.core.masks.maskers import make_masker

        worker = get_current_worker()
        try:
            masker = make_masker(spec)
            result = batch.propose_masks(self.folder, self.names, masker, prompt, replace,
                                         progress=self._progress, stop=lambda: worker.is_cancelled)
        except SdstudioError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a model's own failure is shown, not a crash
            self.app.call_from_thread(self._failed, f"{spec}: {type(exc).__name__}: {exc}")
            return
        if result is not None and not worker.is_cancelled:
            self.app.call_from_thread(self._ready, result)

    @work(thread=True, exclusive=True, group="mask-batch")
    def _crop(self) -> None:
        worker = get_current_worker()
        result = batch.propose_crops(self.folder, self.bucket_resolution, progress=self._progress,
                                     stop=lambda: worker.is_cancelled)
        if result is not None and not worker.is_cancelled:
            self.app.call_from_thread(self._ready, result)

    def _failed(self, message: str) -> None:
        self._status(f"[$error]{escape(message)}[/]")
        self.notify(message, severity="error")

    def _ready(self, result: batch.Proposal) -> None:
        self.proposal = result
        found = result.masks or result.crops
        self.listed = sorted(found) + sorted(result.skipped)
        options = [Option(self._row(name), id=str(i)) for i, name in enumerate(self.listed)]
        box = self.query_one("#mb-list", OptionList)
        box.clear_options()
        box.add_options(options)
        writes = f"accept writes {result.count} files" if result.count else "nothing to write"
        self._status(f"[b]{escape(result.line())}[/] · {writes} · [b]ctrl+s[/] accept  [b]esc[/] cancel")
        self.query_one("#mb-result").add_class("ready")
        if options:
            box.highlighted = 0
            box.focus()

    def _row(self, name: str) -> str:
        p = self.proposal
        assert p is not None
        if name in p.skipped:
            return f"[dim]{escape(name)} · {escape(p.skipped[name])}[/]"
        figure = f"{p.coverages[name]:.0%}" if name in p.masks else describe(p.crops[name])
        return f"{escape(name)} · {figure}"

    @on(OptionList.OptionHighlighted, "#mb-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        name = self.listed[event.option_index]
        p = self.proposal
        if p is None:
            return
        detail = p.skipped.get(name) or (f"coverage {p.coverages[name]:.1%}" if name in p.coverages else "")
        if name in p.crops:
            detail += f" · {describe(p.crops[name])}"
        self.query_one("#mb-detail", Static).update(f"[b]{escape(name)}[/]\n{escape(detail)}")
        self._preview(name, p.masks.get(name), p.crops.get(name))

    @work(thread=True, exclusive=True, group="mask-batch-preview")
    def _preview(self, name: str, mask: Any, box: Any) -> None:
        from sdstudio.core.dataset import load_rgb
        from sdstudio.core.masks.source import load_mask

        try:
            image = load_rgb(self.folder / name)
            mask = mask if mask is not None else load_mask(self.folder / name, self.folder)
        except (OSError, ValueError):
            return
        if box is not None:
            x, y, w, h = box
            shown = marked_original(image, (x, y, x + w, y + h), 1.0, PREVIEW_PX, mask)
        else:
            image.thumbnail((PREVIEW_PX, PREVIEW_PX))
            shown = mask_overlay(image, mask) if mask is not None else image
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(setattr, self.query_one("#mb-pic", Picture), "image", shown)

    def action_accept(self) -> None:
        """Write what the pass proposed; dismisses with the line to tell the user (None: nothing written)."""
        p = self.proposal
        if p is None:
            self.notify("nothing to accept yet: run the pass first", severity="warning")
            return
        prompt = self.query_one("#mb-prompt", Input).value.strip()
        info = {"from": "studio", "model": self.query_one("#mb-model", Input).value.strip(), "prompt": prompt}
        try:
            done = p.write(info if p.masks else {"from": "studio", "action": "to-subject"})
        except OSError as exc:
            self.notify(f"could not write: {exc}", severity="error")
            return
        self.dismiss(done)

    def action_cancel(self) -> None:
        """Escape: out of a text field first; otherwise stop the pass and leave, writing nothing."""
        if isinstance(self.focused, Input):
            self.set_focus(None)
            return
        self.workers.cancel_group(self, "mask-batch")
        self.dismiss(None)
