"""A float slider: Textual ships none, and the merge multiplier and LoRA scales need one.

Keys: ←/→ move one fine step, shift+←/→ one coarse step, home/end jump to the ends;
typing a number (digits, `.`, `-`) opens an edit buffer that enter commits and escape drops.
Mouse: press on the track to jump there, drag to move. Each change posts `FloatSlider.Changed`.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

_TYPED_CHARS = set("0123456789.-")


class FloatSlider(Widget, can_focus=True):
    """A horizontal slider over a float range, snapped to `step` when moved by key or mouse."""

    DEFAULT_CSS = """
    FloatSlider {
        height: 1;
        width: 1fr;
        min-width: 16;
    }
    FloatSlider:focus {
        background: $boost;
    }
    FloatSlider > .slider--track { color: $foreground-muted; }
    FloatSlider > .slider--fill { color: $accent; }
    FloatSlider > .slider--thumb { color: $text; text-style: bold; }
    FloatSlider > .slider--value { color: $text; }
    FloatSlider > .slider--editing { color: $warning; text-style: bold; }
    """
    COMPONENT_CLASSES = {"slider--track", "slider--fill", "slider--thumb", "slider--value", "slider--editing"}

    BINDINGS = [
        Binding("left", "nudge(-1)", "Fine -", show=False, id="slider.fine_down"),
        Binding("right", "nudge(1)", "Fine +", show=False, id="slider.fine_up"),
        Binding("shift+left", "nudge(-10)", "Coarse -", show=False, id="slider.coarse_down"),
        Binding("shift+right", "nudge(10)", "Coarse +", show=False, id="slider.coarse_up"),
        Binding("home", "jump(0)", "Min", show=False),
        Binding("end", "jump(1)", "Max", show=False),
    ]

    value: reactive[float] = reactive(0.0, init=False)
    editing: reactive[str | None] = reactive(None, init=False)

    class Changed(Message):
        """The slider's value changed (by key, typed value, mouse, or code)."""

        def __init__(self, slider: FloatSlider, value: float) -> None:
            super().__init__()
            self.slider = slider
            self.value = value

        @property
        def control(self) -> FloatSlider:
            return self.slider

    def __init__(
        self,
        value: float = 0.0,
        *,
        minimum: float = 0.0,
        maximum: float = 1.0,
        step: float = 0.01,
        coarse_step: float | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        if not maximum > minimum:
            raise ValueError(f"slider maximum ({maximum}) must be greater than minimum ({minimum})")
        if step <= 0:
            raise ValueError(f"slider step must be positive, got {step}")
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.minimum = float(minimum)
        self.maximum = float(maximum)
        self.step = float(step)
        self.coarse_step = float(coarse_step) if coarse_step else self.step * 10
        self._decimals = max(0, -math.floor(math.log10(self.step))) if self.step < 1 else 0
        self._dragging = False
        self.set_reactive(FloatSlider.value, self._clamp(value))

    # value handling
    def _clamp(self, value: float) -> float:
        return min(self.maximum, max(self.minimum, float(value)))

    def _snap(self, value: float) -> float:
        steps = round((value - self.minimum) / self.step)
        return round(self.minimum + steps * self.step, self._decimals + 2)

    def validate_value(self, value: float) -> float:
        return self._clamp(value)

    def watch_value(self, old: float, new: float) -> None:
        if old != new:
            self.post_message(self.Changed(self, new))

    def format_value(self, value: float | None = None) -> str:
        return f"{self.value if value is None else value:.{self._decimals}f}"

    # keyboard
    def action_nudge(self, steps: int) -> None:
        self.editing = None
        size = self.coarse_step if abs(steps) >= 10 else self.step
        direction = 1 if steps > 0 else -1
        self.value = self._clamp(self._snap(self.value + direction * size))

    def action_jump(self, end: int) -> None:
        self.editing = None
        self.value = self.maximum if end else self.minimum

    def on_key(self, event: events.Key) -> None:
        char = event.character
        if self.editing is not None:
            if event.key == "enter":
                self._commit_typed()
            elif event.key == "escape":
                self.editing = None
            elif event.key == "backspace":
                self.editing = self.editing[:-1]
            elif char and char in _TYPED_CHARS:
                self.editing += char
            else:
                return
            event.stop()
            event.prevent_default()
        elif char and char in _TYPED_CHARS:
            self.editing = char
            event.stop()
            event.prevent_default()

    def _commit_typed(self) -> None:
        text, self.editing = self.editing or "", None
        try:
            typed = float(text)
        except ValueError:
            self.notify(f"'{text}' is not a number; type e.g. {self.format_value(self.minimum)}", severity="warning")
            return
        if not math.isfinite(typed):
            return
        self.value = self._clamp(typed)

    def on_blur(self) -> None:
        self.editing = None

    # mouse
    def _track_width(self) -> int:
        return max(2, self.content_size.width - self._label_width() - 1)

    def _label_width(self) -> int:
        return max(len(self.format_value(self.minimum)), len(self.format_value(self.maximum)), 6)

    def _value_at(self, x: int) -> float:
        fraction = min(1.0, max(0.0, x / (self._track_width() - 1)))
        return self._snap(self.minimum + fraction * (self.maximum - self.minimum))

    def on_mouse_down(self, event: events.MouseDown) -> None:
        if event.x >= self._track_width():
            return
        self.editing = None
        self.focus()
        self._dragging = True
        self.capture_mouse()
        self.value = self._value_at(event.x)
        event.stop()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self._dragging:
            self.value = self._value_at(event.x)
            event.stop()

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if self._dragging:
            self._dragging = False
            self.release_mouse()
            event.stop()

    # drawing
    def render(self) -> Text:
        width = self._track_width()
        span = self.maximum - self.minimum
        thumb = round((self.value - self.minimum) / span * (width - 1))
        text = Text(no_wrap=True, overflow="crop")
        text.append("━" * thumb, style=self.get_component_rich_style("slider--fill"))
        text.append("●", style=self.get_component_rich_style("slider--thumb"))
        text.append("─" * (width - thumb - 1), style=self.get_component_rich_style("slider--track"))
        text.append(" ")
        if self.editing is not None:
            shown = (self.editing + "▏").rjust(self._label_width())
            text.append(shown, style=self.get_component_rich_style("slider--editing"))
        else:
            text.append(self.format_value().rjust(self._label_width()), style=self.get_component_rich_style("slider--value"))
        return text
