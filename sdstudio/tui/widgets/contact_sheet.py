"""The Checkpoints contact sheet: steps as rows, prompts x seeds as columns, a thumbnail per cell.

Each cell is a `Picture` (sdstudio.tui.images), so it is a half-cell image at least and a true
Sixel/Kitty picture where the terminal has one. Columns scroll sideways; `hint` says how many
are out of view ("8 samples, 5 shown →"). `w` switches to the row-wise mode: every sample of the
selected step side by side, larger. The sheet only moves a cursor class between two cells on a
key press, so a move repaints two cells, not 48.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from sdstudio.tui.images import Picture

CELL_W, CELL_H = 12, 6  # one thumbnail: 12 columns x 6 rows (12 x 12 pixels of half-cells, more with Sixel)
ROW_W, ROW_H = 20, 10  # a thumbnail in the row view: every sample of one step, wrapped to the width
LABEL_W = 10


@dataclass(frozen=True)
class SheetRow:
    step: int
    label: str  # "   20 ◆★"
    paths: tuple[Path | None, ...]  # one per column


class Cell(Vertical):
    DEFAULT_CSS = f"""
    Cell {{ width: {CELL_W}; height: {CELL_H}; border: none; }}
    Cell.-cursor, Cell.-cursor * {{ tint: $accent 40%; }}
    Cell > Picture {{ width: {CELL_W}; height: {CELL_H}; }}
    Cell > Picture > .picture-image {{ width: 100%; height: 100%; }}
    """

    def __init__(self, path: Path | None, row: int, column: int) -> None:
        super().__init__(classes=f"r{row} c{column}")
        self.path, self.row, self.column = path, row, column

    def compose(self) -> ComposeResult:
        yield Picture(self.path)

    def on_mount(self) -> None:
        if self.has_class("-cursor"):  # the cursor's cell came with new rows: bring it into view once placed
            self.call_after_refresh(self.scroll_visible, animate=False, immediate=True)

    def set_path(self, path: Path | None) -> None:
        if path != self.path:
            self.path = path
            self.query_one(Picture).show(path)


class ContactSheet(Vertical, can_focus=True):
    """`set_rows(titles, rows)` fills it; arrows/hjkl move; `Selected` says where the cursor is."""

    DEFAULT_CSS = f"""
    ContactSheet {{ height: 1fr; }}
    ContactSheet:focus #sheet-hint {{ color: $accent; }}
    ContactSheet #sheet-hint {{ height: 1; width: 1fr; color: $text-muted; }}
    ContactSheet #sheet-scroll {{ height: 1fr; overflow-x: hidden; overflow-y: auto; }}
    ContactSheet .sheet-line {{ height: {CELL_H}; width: auto; }}
    ContactSheet .sheet-head {{ height: 1; width: auto; }}
    ContactSheet .sheet-label {{ width: {LABEL_W}; height: 100%; color: $text-muted; }}
    ContactSheet .sheet-title {{ width: {CELL_W}; height: 1; color: $text-muted; }}
    ContactSheet.-row-mode .sheet-line, ContactSheet.-row-mode .sheet-head {{ display: none; }}
    ContactSheet.-row-mode .sheet-line.-cursor-row {{
        display: block; layout: grid; grid-columns: {ROW_W}; grid-rows: {ROW_H}; height: auto; width: 100%;
    }}
    ContactSheet.-row-mode .sheet-label {{ display: none; }}
    ContactSheet.-row-mode Cell {{ width: {ROW_W}; height: {ROW_H}; }}
    ContactSheet.-row-mode Cell > Picture {{ width: {ROW_W}; height: {ROW_H}; }}
    """
    BINDINGS = [
        Binding("left,h", "move(0, -1)", "Left", show=False),
        Binding("right,l", "move(0, 1)", "Right", show=False),
        Binding("up,k", "move(-1, 0)", "Up", show=False),
        Binding("down,j", "move(1, 0)", "Down", show=False),
        Binding("w", "toggle_rows", "Row view", id="checkpoints.row_view", show=False,  # the sheet's hint shows it
                tooltip="Show every sample of the selected step side by side (w again: the whole sheet)"),
    ]

    cursor: reactive[tuple[int, int]] = reactive((0, 0), init=False)

    class Selected(Message):
        def __init__(self, sheet: ContactSheet, row: int, column: int) -> None:
            super().__init__()
            self.sheet, self.row, self.column = sheet, row, column

        @property
        def control(self) -> ContactSheet:
            return self.sheet

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.titles: list[str] = []
        self.rows: list[SheetRow] = []
        self._cells: dict[tuple[int, int], Cell] = {}
        self._lines: list[Horizontal] = []
        self._titles: list[Static] = []
        self.first_column = 0  # columns scroll by whole cells; the step labels always stay in view

    def compose(self) -> ComposeResult:
        yield Static("", id="sheet-hint")
        yield ScrollableContainer(id="sheet-scroll", can_focus=False)

    # filling
    def set_rows(self, titles: list[str], rows: list[SheetRow], cursor: tuple[int, int] | None = None) -> None:
        """Show these rows; cells whose picture did not change keep their widget (no flicker)."""
        same_shape = titles == self.titles and len(rows) >= len(self.rows) and \
            [r.step for r in rows[:len(self.rows)]] == [r.step for r in self.rows]
        old_rows = self.rows
        self.titles, self.rows = list(titles), list(rows)
        scroll = self.query_one("#sheet-scroll", ScrollableContainer)
        if not same_shape:
            scroll.remove_children()
            self._cells.clear()
            self._lines = []
            self._titles = [Static(t, classes="sheet-title") for t in titles]
            head = Horizontal(Static("step", classes="sheet-label"), *self._titles, classes="sheet-head")
            scroll.mount(head)
            old_rows = []
        for r, row in enumerate(rows):
            if r < len(old_rows):
                self._lines[r].query_one(".sheet-label", Static).update(row.label)
                for c, path in enumerate(row.paths):
                    self._cells[(r, c)].set_path(path)
                continue
            cells = [Cell(path, r, c) for c, path in enumerate(row.paths)]
            line = Horizontal(Static(row.label, classes="sheet-label"), *cells, classes="sheet-line")
            self._lines.append(line)
            self._cells.update({(r, c): cell for c, cell in enumerate(cells)})
            scroll.mount(line)
        target = cursor if cursor is not None else self.cursor
        self.cursor = self._clamp(target)
        self._mark(None, self.cursor)
        self._apply_window(force=True)
        self.call_after_refresh(self._scroll_to_cursor)  # new cells have no place until laid out

    def _scroll_to_cursor(self) -> None:
        cell = self._cells.get(self.cursor)
        if cell is not None:
            self.query_one("#sheet-scroll", ScrollableContainer).scroll_to_widget(cell, animate=False)

    def _clamp(self, rc: tuple[int, int]) -> tuple[int, int]:
        if not self.rows:
            return (0, 0)
        return (min(max(rc[0], 0), len(self.rows) - 1), min(max(rc[1], 0), max(len(self.titles) - 1, 0)))

    # the cursor
    def watch_cursor(self, old: tuple[int, int], new: tuple[int, int]) -> None:
        self._mark(old, new)
        self._apply_window()
        cell = self._cells.get(new)
        if cell is not None:
            self.query_one("#sheet-scroll", ScrollableContainer).scroll_to_widget(cell, animate=False)
        self.post_message(self.Selected(self, *new))

    # the window of columns in view
    @property
    def visible_columns(self) -> int:
        """Columns in view: those that fit beside the step labels; in the row view, all of them."""
        if self.row_mode:
            return max(1, len(self.titles))
        view = self.query_one("#sheet-scroll", ScrollableContainer).scrollable_content_region.width - LABEL_W
        return max(1, view // CELL_W)

    def _apply_window(self, force: bool = False) -> None:
        """Show the columns [first, first + visible) so that the cursor's column is among them."""
        if not self.is_mounted:
            return
        n, col = self.visible_columns, self.cursor[1]
        first = min(self.first_column, max(0, len(self.titles) - n))
        if col < first:
            first = col
        elif col >= first + n:
            first = col - n + 1
        window = (first, n)
        if force or window != getattr(self, "_window", None):
            self._window = window
            self.first_column = first
            for (_, c), cell in self._cells.items():
                cell.display = first <= c < first + n
            for c, title in enumerate(self._titles):
                title.display = first <= c < first + n
        self._update_hint()

    def _mark(self, old: tuple[int, int] | None, new: tuple[int, int]) -> None:
        if old is not None and old in self._cells:
            self._cells[old].remove_class("-cursor")
        if new in self._cells:
            self._cells[new].add_class("-cursor")
        # the row class restyles a whole line: only the row view needs it, and it sets it when entered
        if self.row_mode and (old is None or old[0] != new[0]):
            self._mark_row(new[0])

    def _mark_row(self, row: int | None) -> None:
        for r, line in enumerate(self._lines):
            if line.has_class("-cursor-row") != (r == row):
                line.set_class(r == row, "-cursor-row")

    def action_move(self, drow: int, dcol: int) -> None:
        if self.rows:
            self.cursor = self._clamp((self.cursor[0] + drow, self.cursor[1] + dcol))

    def action_toggle_rows(self) -> None:
        self.toggle_class("-row-mode")
        self._mark_row(self.cursor[0] if self.row_mode else None)
        self.call_after_refresh(self._after_mode_change)

    def _after_mode_change(self) -> None:
        per_line = max(1, self.query_one("#sheet-scroll", ScrollableContainer).scrollable_content_region.width // ROW_W)
        for line in self._lines:
            line.styles.grid_size_columns = per_line
        self._apply_window(force=True)
        self._scroll_to_cursor()
        self._update_hint()

    @property
    def row_mode(self) -> bool:
        return self.has_class("-row-mode")

    # the hint
    @property
    def hint(self) -> str:
        """'8 samples, 5 shown →' (arrows where more columns are out of view)."""
        total = len(self.titles)
        if not total:
            return "no samples yet"
        first = self.first_column
        shown = max(1, min(total - first, self.visible_columns))
        left = "← " if first > 0 else ""
        right = " →" if first + shown < total else ""
        if self.row_mode:
            step = self.rows[self.cursor[0]].step if self.rows else "-"
            return f"step {step}: all {total} samples · w: back to the sheet"
        mode = " · w: row view"
        return f"{left}{total} samples, {shown} shown{right}{mode}"

    def _update_hint(self) -> None:
        if self.is_mounted:
            text = self.hint
            if text != getattr(self, "_hint_shown", None):  # an update costs a repaint: only on change
                self._hint_shown = text
                self.query_one("#sheet-hint", Static).update(text)

    def on_resize(self) -> None:
        self.call_after_refresh(self._after_mode_change)
