"""Textual's Footer, rebuilt only when what it shows has changed.

Textual's Footer recomposes on every bindings update, and a screen switch is one: every key is
mounted and restyled again (with compact keys, twice), about a third of a switch. The keys a
screen shows rarely change, so the footer compares them first.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


class StudioFooter(Footer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple[Any, ...] | None = None

    def bindings_changed(self, screen: Screen) -> None:
        shown = tuple((key, active.binding.description, active.enabled, active.binding.key_display,
                       active.binding.tooltip, self.app.get_key_display(active.binding))
                      for key, active in screen.active_bindings.items() if active.binding.show)
        if shown == self._shown and self.children:
            self._bindings_ready = True
            return
        self._shown = shown
        super().bindings_changed(screen)
