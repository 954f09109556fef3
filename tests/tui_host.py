"""A bare app that shows one screen, as the studio's modes do, for screen-level Pilot tests."""

from __future__ import annotations

from textual.app import App
from textual.screen import Screen


class ScreenHost(App):
    TITLE = "Host"  # the header text the screens' snapshots were taken with

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self._screen = screen

    def on_mount(self) -> None:
        self.push_screen(self._screen)
