"""The Dataset screen's keyboard crop editor: one image's crop box, changed a step per key.

hjkl (or the arrows) move the box, H/K shrink it and J/L grow it at the locked aspect (the
image's bucket, or square), r goes back to no box (the default crop), s proposes the subject's
box from the image's mask, Enter or ctrl+s accepts, Escape leaves without writing. The geometry
is `sdstudio.core.masks.crop_edit`; this widget only keeps the state and says what changed.
"""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static

from sdstudio.core.masks import crop_edit
from sdstudio.core.masks.crops import Box

KEYS = "[b]hjkl[/] move  [b]HJKL[/] size  [b]r[/] reset  [b]s[/] subject"


class CropEditor(Static, can_focus=True):
    """Hidden until `start`; posts Changed on every step and Done when left."""

    DEFAULT_CSS = """
    CropEditor { display: none; height: auto; padding: 0 1; background: $boost; }
    CropEditor.-editing { display: block; }
    CropEditor:focus { background-tint: $accent 20%; }
    """
    BINDINGS = [
        Binding("h,left", "move(-1, 0)", "Left", show=False),
        Binding("l,right", "move(1, 0)", "Right", show=False),
        Binding("k,up", "move(0, -1)", "Up", show=False),
        Binding("j,down", "move(0, 1)", "Down", show=False),
        Binding("H,K,shift+left,shift+up", "resize(-1)", "Smaller", show=False),
        Binding("L,J,shift+right,shift+down", "resize(1)", "Larger", show=False),
        Binding("r", "reset", "Reset", show=False),
        Binding("s", "subject", "Subject", show=False),
        Binding("enter,ctrl+s", "accept", "Accept", id="crop.accept", tooltip="Save this crop box"),
        Binding("escape", "leave", "Leave", id="crop.leave", show=False, tooltip="Leave without saving"),
    ]

    class Changed(Message):
        """The box moved, resized or was reset (None: no box, the default crop)."""

        def __init__(self, name: str, box: Box | None) -> None:
            super().__init__()
            self.name, self.box = name, box

    class Done(Message):
        """Editing ended: `accepted` with the box to write (None clears the stored one), or left."""

        def __init__(self, name: str, box: Box | None, accepted: bool) -> None:
            super().__init__()
            self.name, self.box, self.accepted = name, box, accepted

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", markup=True, **kwargs)
        self.name_: str = ""
        self.size_: tuple[int, int] = (1, 1)
        self.aspect = 1.0
        self.box: Box | None = None
        self.mask: Any = None

    @property
    def editing(self) -> bool:
        return self.has_class("-editing")

    def start(self, name: str, image_size: tuple[int, int], aspect: float, box: Box | None, mask: Any) -> None:
        """Edit `name`'s crop, starting from its stored `box` (None: the default crop)."""
        self.name_, self.size_, self.aspect, self.box, self.mask = name, image_size, aspect, box, mask
        self.add_class("-editing")
        self._update()
        self.focus()

    def _update(self) -> None:
        ratio = f"{self.aspect:.2f}:1" if abs(self.aspect - 1) > 1e-6 else "square"
        shown = crop_edit.describe(self.box) if self.box else "no crop (default)"
        self.update(f"[b]{shown}[/] ({ratio})  [b]⏎[/] accept  [b]esc[/] leave\n{KEYS}")

    def _changed(self, box: Box | None) -> None:
        self.box = box
        self._update()
        self.post_message(self.Changed(self.name_, box))

    def _current(self) -> Box:
        return self.box or crop_edit.default_box(self.size_, self.aspect)

    def action_move(self, dx: int, dy: int) -> None:
        step = crop_edit.step_px(self.size_)
        self._changed(crop_edit.move_box(self._current(), dx * step, dy * step, self.size_))

    def action_resize(self, sign: int) -> None:
        step = crop_edit.step_px(self.size_)
        self._changed(crop_edit.resize_box(self._current(), sign * 2 * step, self.aspect, self.size_))

    def action_reset(self) -> None:
        self._changed(None)

    def action_subject(self) -> None:
        from sdstudio.core.masks.subject_crop import propose_crop

        box = propose_crop(self.mask, self.aspect) if self.mask is not None else None
        if box is None:
            self.notify("no subject: this image has no mask, or an empty one (Mask all makes masks)",
                        severity="warning")
            return
        self._changed(box)

    def _end(self, accepted: bool) -> None:
        self.screen.set_focus(None)  # hiding a focused widget would pass the focus on (and scroll to it)
        self.remove_class("-editing")
        self.post_message(self.Done(self.name_, self.box, accepted))

    def action_accept(self) -> None:
        self._end(True)

    def action_leave(self) -> None:
        self._end(False)
