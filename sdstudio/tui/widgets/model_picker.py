"""Choose a model or a LoRA from a list (`core.catalog`), or type a path as the list's last choice.

One compact row: a Select of the known entries plus "type a path…", which opens an input beside
it; enter adds the typed path to the list and selects it. `value` is '' or what the engine's
model resolver accepts (`demo`, a folder, a file).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Select

from sdstudio.core.catalog import CatalogEntry

TYPED = "\0typed"


class ModelPicker(Horizontal):
    """A Select over catalog entries with a typed-path fallback; posts `Changed` with the new value."""

    DEFAULT_CSS = """
    ModelPicker { height: 1; width: 1fr; }
    ModelPicker > Select { width: 1fr; }
    ModelPicker > Input { width: 1fr; display: none; }
    ModelPicker.-typing > Input { display: block; }
    ModelPicker.-typing > Select { width: 18; }
    """

    class Changed(Message):
        def __init__(self, picker: ModelPicker, value: str) -> None:
            super().__init__()
            self.picker = picker
            self.value = value

        @property
        def control(self) -> ModelPicker:
            return self.picker

    def __init__(self, entries: Sequence[CatalogEntry], value: str = "", *, prompt: str = "choose…",
                 path_placeholder: str = "a folder or a .safetensors file, then enter", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._options: list[tuple[str, str]] = [(e.label, e.value) for e in entries]
        self._initial = value
        self._prompt = prompt
        self._path_placeholder = path_placeholder
        if value and value not in {v for _, v in self._options}:
            self._options.append((f"{value}  (path)", value))

    def compose(self) -> ComposeResult:
        yield Select([*self._options, ("type a path…", TYPED)], value=self._initial or Select.NULL,
                     prompt=self._prompt, compact=True)
        yield Input("", placeholder=self._path_placeholder, compact=True)

    @property
    def options(self) -> list[tuple[str, str]]:
        return list(self._options)

    @property
    def value(self) -> str:
        chosen = self.query_one(Select).value
        return chosen if isinstance(chosen, str) and chosen != TYPED else ""

    @value.setter
    def value(self, new: str) -> None:
        new = str(new).strip()
        select = self.query_one(Select)
        if new and new not in {v for _, v in self._options}:
            self._options.append((f"{new}  (path)", new))
            with self.prevent(Select.Changed):
                select.set_options([*self._options, ("type a path…", TYPED)])
        with self.prevent(Select.Changed):
            select.value = new or Select.NULL
        self.remove_class("-typing")

    def focus(self, scroll_visible: bool = True) -> ModelPicker:
        self.query_one(Select).focus(scroll_visible)
        return self

    @on(Select.Changed)
    def _chosen(self, event: Select.Changed) -> None:
        event.stop()
        if event.value == TYPED:
            self.add_class("-typing")
            self.query_one(Input).focus()
            return
        self.remove_class("-typing")
        self.post_message(self.Changed(self, self.value))

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            return
        self.value = text
        self.query_one(Select).focus()
        self.post_message(self.Changed(self, text))
