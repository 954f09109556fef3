"""A keyboard- and mouse-driven grid of small image tiles, each with a caption and a status mark.

The Dataset screen shows a folder's files in it (status from the checker), the Generate
screen its results. Thumbnails arrive later than the tiles (they are made in a worker),
so a tile starts with text only and gets its picture via `set_thumbnail`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import events
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from sdstudio.tui.images import Picture

MARKS = {"ok": ("✓", "success"), "warning": ("!", "warning"), "bad": ("✗", "error"), "": (" ", "")}


@dataclass
class TileSpec:
    """What a tile shows: a label, a status (ok | warning | bad | ''), and a key for the caller."""

    key: str
    label: str
    status: str = ""


class Tile(Vertical):
    """One cell of the grid; the grid handles focus and selection."""

    DEFAULT_CSS = """
    Tile { width: 14; height: 7; border: blank; }
    Tile.-selected { border: round $accent; }
    Tile > .tile--pic { width: 12; height: 4; }
    Tile > .tile--label { width: 100%; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    Tile .mark-success { color: $success; }
    """

    def __init__(self, spec: TileSpec, index: int) -> None:
        super().__init__()
        self.spec = spec
        self.index = index

    def compose(self):  # noqa: ANN201 - Textual compose
        yield Picture(classes="tile--pic")
        yield Static(self._label_markup(), classes="tile--label", markup=True)

    def _label_markup(self) -> str:
        mark, colour = MARKS.get(self.spec.status, MARKS[""])
        style = f"[${colour}]{mark}[/] " if colour else ""
        return f"{style}{_escape(self.spec.label)}"

    def retitle(self, label: str, status: str) -> None:
        self.spec.label, self.spec.status = label, status
        self.query_one(".tile--label", Static).update(self._label_markup())

    def set_thumbnail(self, image: Any) -> None:
        pictures = self.query(".tile--pic")
        if pictures:
            pictures.first().image = image
        else:  # the thumbnail came before the tile was composed: show it when it is
            self.call_after_refresh(self.set_thumbnail, image)

    def on_click(self, event: events.Click) -> None:
        grid = self.parent
        while grid is not None and not isinstance(grid, ThumbGrid):
            grid = grid.parent
        if grid is not None:
            grid.focus()
            grid.cursor = self.index
            if event.chain >= 2:
                grid.post_message(ThumbGrid.Activated(grid, self.index))


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


class ThumbGrid(VerticalScroll, can_focus=True):
    """Tiles in rows that fill the width; arrows/hjkl move, enter activates."""

    DEFAULT_CSS = """
    ThumbGrid { layout: grid; grid-size: 4; grid-rows: 7; grid-columns: 14; grid-gutter: 0; height: 1fr; }
    ThumbGrid:focus { border: tall $accent; }
    ThumbGrid { border: tall $panel; }
    """
    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "Left", show=False),
        Binding("right,l", "move(1, 0)", "Right", show=False),
        Binding("up,k", "move(0, -1)", "Up", show=False),
        Binding("down,j", "move(0, 1)", "Down", show=False),
        Binding("home", "first", show=False),
        Binding("end", "last", show=False),
        Binding("enter", "activate", "Open", show=False),
    ]
    TILE_WIDTH = 14

    cursor: reactive[int] = reactive(-1, init=False)

    class Selected(Message):
        """The cursor moved onto a tile."""

        def __init__(self, grid: ThumbGrid, index: int) -> None:
            super().__init__()
            self.grid = grid
            self.index = index

        @property
        def control(self) -> ThumbGrid:
            return self.grid

    class Activated(Selected):
        """Enter or double click on a tile."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.specs: list[TileSpec] = []

    @property
    def columns(self) -> int:
        return max(1, (self.scrollable_content_region.width or self.TILE_WIDTH) // self.TILE_WIDTH)

    def on_resize(self) -> None:
        self.styles.grid_size_columns = self.columns

    async def set_tiles(self, specs: list[TileSpec]) -> None:
        """Replace every tile; the cursor goes to the first one."""
        self.specs = list(specs)
        await self.remove_children()
        await self.mount_all([Tile(spec, i) for i, spec in enumerate(self.specs)])
        self.styles.grid_size_columns = self.columns
        self.cursor = -1
        if self.specs:
            self.cursor = 0

    async def add_tile(self, spec: TileSpec) -> Tile:
        tile = Tile(spec, len(self.specs))
        self.specs.append(spec)
        await self.mount(tile)
        return tile

    def _tiles(self) -> list[Tile]:
        """The tiles in order: the grid's own children (a CSS query per call walks every
        tile's subtree, which made a folder of hundreds of thumbnails quadratic)."""
        return [child for child in self.children if isinstance(child, Tile)]

    def tile(self, index: int) -> Tile:
        return self._tiles()[index]

    def set_thumbnail(self, index: int, image: Any) -> None:
        tiles = self._tiles()
        if 0 <= index < len(tiles):
            tiles[index].set_thumbnail(image)

    def retitle(self, index: int, label: str, status: str) -> None:
        tiles = self._tiles()
        if 0 <= index < len(tiles):
            tiles[index].retitle(label, status)

    def watch_cursor(self, old: int, new: int) -> None:
        tiles = self._tiles()
        if 0 <= old < len(tiles):
            tiles[old].remove_class("-selected")
        if 0 <= new < len(tiles):
            tiles[new].add_class("-selected")
            self.scroll_to_widget(tiles[new], animate=False)
            self.post_message(self.Selected(self, new))

    def action_move(self, dx: int, dy: int) -> None:
        if not self.specs:
            return
        target = max(0, self.cursor) + dx + dy * self.columns
        self.cursor = min(len(self.specs) - 1, max(0, target))

    def action_first(self) -> None:
        if self.specs:
            self.cursor = 0

    def action_last(self) -> None:
        if self.specs:
            self.cursor = len(self.specs) - 1

    def action_activate(self) -> None:
        if 0 <= self.cursor < len(self.specs):
            self.post_message(self.Activated(self, self.cursor))
