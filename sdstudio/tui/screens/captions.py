"""Caption a dataset folder from the studio, then review every caption before it is written.

The pass runs in a thread worker (`sdstudio.core.captions.runner`, the CLI's code) with a progress
line; the review shows one image with its old and new caption side by side. Keys: a accept,
e edit (Escape leaves the box, a accepts the edit), r reject, n/p next/previous, A accept all,
Escape finish (writes the accepted captions as one logged pass, undoable with
`sdstudio caption DIR --undo`), q leave without writing. Nothing reaches the disk before that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Header, Input, Label, Select, Static, TextArea

from sdstudio.core.captions.review import ACCEPTED, REJECTED, Review
from sdstudio.tui.images import Picture
from sdstudio.tui.screens.base import StudioScreen
from sdstudio.tui.widgets.footer import StudioFooter

KEYS_HELP = ("[b]a[/] accept  [b]e[/] edit  [b]r[/] reject  [b]n[/]/[b]p[/] next/prev  [b]A[/] accept all  "
             "[b]esc[/] write  [b]q[/] discard")


def marked(text: str, trigger: str) -> str:
    """Caption markup with the trigger word highlighted, so a person sees that it is there."""
    safe = escape(text)
    word = escape(trigger.strip())
    return safe.replace(word, f"[b reverse]{word}[/]") if word else safe


class CaptionScreen(StudioScreen):
    """Dismisses with the number of captions written (0 when none)."""

    AUTO_FOCUS = "#cap-model"
    DEFAULT_CSS = """
    CaptionScreen #cap-setup, CaptionScreen #cap-setup2 { height: 1; }
    CaptionScreen #cap-setup Label, CaptionScreen #cap-setup2 Label { padding: 0 1; }
    CaptionScreen #cap-model { width: 1fr; }
    CaptionScreen #cap-mode { width: 12; }
    CaptionScreen #cap-trigger { width: 12; }
    CaptionScreen #cap-prompt { width: 1fr; }
    CaptionScreen #cap-run { width: auto; min-width: 0; margin-left: 1; }
    CaptionScreen #cap-progress { height: 1; padding: 0 1; color: $text-muted; }
    CaptionScreen #cap-review { height: 1fr; display: none; }
    CaptionScreen #cap-review.ready { display: block; }
    CaptionScreen #cap-status { height: 1; padding: 0 1; }
    CaptionScreen #cap-pair { height: 1fr; }
    CaptionScreen #cap-picture { width: 26; height: 13; }
    CaptionScreen #cap-texts > Vertical { width: 1fr; padding: 0 0 0 1; }
    CaptionScreen #cap-texts Label { color: $text-muted; }
    CaptionScreen #cap-old { height: auto; padding: 1 1 0 1; }
    CaptionScreen #cap-new { height: 7; }
    CaptionScreen #cap-keys { height: 1; padding: 0 1; }
    """
    BINDINGS = [
        Binding("a", "accept", "Accept", id="caption.accept", show=False),
        Binding("e", "edit", "Edit", id="caption.edit", show=False),
        Binding("r", "reject", "Reject", id="caption.reject", show=False),
        Binding("n,right", "move(1)", "Next", id="caption.next", show=False),
        Binding("p,left", "move(-1)", "Previous", id="caption.previous", show=False),
        Binding("A", "accept_all", "Accept all", id="caption.accept_all", show=False),
        Binding("escape", "finish", "Write accepted", id="caption.finish"),
        Binding("q", "discard", "Discard", id="caption.discard", show=False),
    ]

    def __init__(self, folder: str | Path, model: str = "demo", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.folder = Path(folder)
        self.initial_model = model
        self.review: Review | None = None
        self.plan: Any = None
        self.info: dict[str, Any] = {}
        self.trigger = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="cap-setup"):
            yield Label("model")
            yield Input(self.initial_model, placeholder="demo, a folder or a cached hub id", compact=True, id="cap-model")
            yield Select([("fill", "fill"), ("replace", "replace"), ("append", "append")], value="fill",
                         allow_blank=False, compact=True, id="cap-mode")
            yield Label("trigger")
            yield Input("", placeholder="word", compact=True, id="cap-trigger")
            yield Button("Caption", id="cap-run", variant="primary", compact=True)
        with Horizontal(id="cap-setup2"):
            yield Label("prompt")
            yield Input("", placeholder="instruction for a chat model (optional)", compact=True, id="cap-prompt")
        yield Static("Enter (or Caption) starts; nothing is written before you accept.",
                     id="cap-progress")
        with Vertical(id="cap-review"):
            yield Static("", id="cap-status")
            with Horizontal(id="cap-pair"):
                yield Picture(id="cap-picture")
                with Horizontal(id="cap-texts"):
                    with Vertical():
                        yield Label("old caption")
                        yield Static("", id="cap-old")
                    with Vertical():
                        yield Label("new caption (e edits)", id="cap-new-label")
                        yield TextArea("", id="cap-new", soft_wrap=True, show_line_numbers=False)
            yield Static(KEYS_HELP, id="cap-keys")
        yield StudioFooter()

    def on_mount(self) -> None:
        self.sub_title = f"Captions · {self.folder.name}"

    # captioning
    @on(Input.Submitted)
    @on(Button.Pressed, "#cap-run")
    def start(self) -> None:
        from sdstudio.core.captions.compose import Style

        try:
            style = Style(str(self.query_one("#cap-mode", Select).value), self.query_one("#cap-trigger", Input).value)
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        self.trigger = style.trigger
        model = self.query_one("#cap-model", Input).value.strip() or "demo"
        prompt = self.query_one("#cap-prompt", Input).value.strip() or None
        self.set_focus(None)
        self.query_one("#cap-progress", Static).update(f"loading {model} …")
        self._caption(model, style, prompt)

    @work(thread=True, exclusive=True, group="captioning")
    def _caption(self, model: str, style: Any, prompt: str | None) -> None:
        from sdstudio.core.captions import runner
        from sdstudio.core.errors import SdstudioError
        from sdstudio.demo.captioner import open_captioner

        try:
            plan = runner.plan(self.folder, style)
            captioner = open_captioner(model)
            show = lambda p: self.app.call_from_thread(self.query_one("#cap-progress", Static).update, p.line())  # noqa: E731
            proposals = runner.run(plan, captioner, style, prompt, progress=show)
        except SdstudioError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a model's own failure (memory, a bad file) is shown, not a crash
            self.app.call_from_thread(self._failed, f"{model}: {type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._ready, plan, [p for p in proposals if p.changed],
                                  runner.provenance(captioner, style, prompt))

    def _failed(self, message: str) -> None:
        self.query_one("#cap-progress", Static).update(f"[$error]{escape(message)}[/]")
        self.notify(message, severity="error")

    def _ready(self, plan: Any, proposals: list[Any], info: dict[str, Any]) -> None:
        self.plan, self.info = plan, {**info, "reviewed": True}
        self.review = Review(proposals)
        kept = f", {plan.kept} kept" if plan.kept else ""
        kept += f", {len(plan.unreadable)} skipped" if plan.unreadable else ""
        self.query_one("#cap-progress", Static).update(
            f"{len(proposals)} new captions to review{kept} · store: {plan.store}")
        self.query_one("#cap-review").set_class(bool(proposals), "ready")
        if proposals:
            self._show()

    # review
    def _show(self) -> None:
        review = self.review
        if review is None or review.current is None:
            return
        p, counts = review.current, review.counts()
        state = {ACCEPTED: "[$success]accepted[/]", REJECTED: "[$error]rejected[/]"}.get(review.state(), "to review")
        trigger = f" · trigger: [b reverse]{escape(self.trigger)}[/]" if self.trigger else " · no trigger word"
        self.query_one("#cap-status", Static).update(
            f"{review.index + 1}/{len(review.proposals)} [b]{escape(p.file_name)}[/] {state}{trigger} · "
            f"{counts[ACCEPTED]} accepted, {counts[REJECTED]} rejected")
        self.query_one("#cap-picture", Picture).show(self.folder / p.file_name)
        self.query_one("#cap-old", Static).update(marked(p.old, self.trigger) if p.old else "[i](none)[/]")
        self.query_one("#cap-new", TextArea).load_text(review.text())
        has = not self.trigger or self.trigger.strip() in review.text()
        self.query_one("#cap-new-label", Label).update(
            "new caption (e edits)" + ("" if has else f" [$warning]no {escape(self.trigger)}[/]"))

    def _reviewing(self) -> bool:
        return self.review is not None and self.review.current is not None

    def action_accept(self) -> None:
        if self._reviewing():
            self.review.accept(self.query_one("#cap-new", TextArea).text)  # type: ignore[union-attr]
            self._show()

    def action_reject(self) -> None:
        if self._reviewing():
            self.review.reject()  # type: ignore[union-attr]
            self._show()

    def action_edit(self) -> None:
        if self._reviewing():
            box = self.query_one("#cap-new", TextArea)
            box.focus()
            box.move_cursor(box.document.end)

    def action_move(self, step: int) -> None:
        if self._reviewing():
            self.review.move(step)  # type: ignore[union-attr]
            self._show()

    def action_accept_all(self) -> None:
        if self._reviewing():
            self.review.accept(self.query_one("#cap-new", TextArea).text)  # type: ignore[union-attr]
            more = self.review.accept_all()  # type: ignore[union-attr]
            self.notify(f"accepted {more + 1} captions; Escape writes them")
            self._show()

    def action_finish(self) -> None:
        """Escape: out of a text field first; otherwise write the accepted captions and close."""
        if isinstance(self.focused, (Input, TextArea)):
            self.set_focus(None)
            return
        written = 0
        if self.review is not None and self.plan is not None:
            from sdstudio.core.captions import runner

            accepted = self.review.accepted()
            try:
                entry = runner.apply(self.plan, accepted, self.info)
            except OSError as exc:
                self.notify(f"could not write the captions: {exc}", severity="error")
                return
            if entry:
                written = len(entry["changes"])
                self.notify(f"wrote {written} captions to {self.plan.store} "
                            f"(undo: sdstudio caption {self.folder} --undo)")
        self.dismiss(written)

    def action_discard(self) -> None:
        if self.review is not None and self.review.counts()[ACCEPTED]:
            self.notify("accepted captions discarded; nothing written")
        self.dismiss(0)


def open_captions(screen: Any) -> None:
    """From the Dataset screen: caption its folder here, then re-check it if anything was written."""
    if screen.folder is None:
        screen.notify("open a dataset folder first", severity="warning")
        return
    screen.app.push_screen(CaptionScreen(screen.folder), lambda written: screen.action_rescan() if written else None)
