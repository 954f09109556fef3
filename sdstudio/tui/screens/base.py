"""What every studio screen shares: switching back to it does not restyle it from scratch.

Textual re-applies the whole stylesheet to a screen each time it is resumed, the first time too,
right after styling every node as it was mounted (a sixth of the first paint; with the 48
thumbnails of the contact sheet, most of a screen switch). Styles change while a
screen is away only when the theme does (class changes are applied at once, wherever the node
is), so the full refresh is kept for that case alone.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.screen import Screen


class StudioScreen(Screen[Any]):
    _theme_when_suspended: str | None = None

    def _on_mount(self, event: events.Mount) -> None:
        # every node was styled as it was mounted: the first resume has nothing to refresh either
        self._theme_when_suspended = self.app.theme

    def _on_screen_suspend(self, event: events.ScreenSuspend) -> None:
        self._theme_when_suspended = self.app.theme

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # runs before Screen's own handler (Textual dispatches along the MRO, subclass first)
        if self._theme_when_suspended is not None and self._theme_when_suspended == self.app.theme:
            event.refresh_styles = False
