"""The run queue on the Train screen: what waits, what runs, what failed (hidden when empty).

It re-reads <runs>/queue.json every few seconds, so entries added with `sdstudio queue add`
from another session show up here, and the runner's progress too.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Static

from sdstudio.core.errors import SdstudioError

POLL_SECONDS = 2.0
ICONS = {"queued": "·", "running": "▶", "finished": "✓", "failed": "✗", "stopped": "■"}


def queue_lines(items: list[Any], width: int = 40) -> list[str]:
    lines = []
    for n, item in enumerate(items, 1):
        name = item.run_name or item.run_dir
        text = f"{n:>2} {ICONS.get(item.state, '?')} {item.state:<8} {name}"
        if item.error:
            text += f": {item.error}"
        lines.append(text[:width])
    return lines


class QueuePanel(Static):
    DEFAULT_CSS = """
    QueuePanel { height: auto; max-height: 8; border-top: solid $panel; color: $text-muted; }
    QueuePanel.-empty { display: none; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self._shown: tuple[str, ...] | None = None
        self.add_class("-empty")

    def on_mount(self) -> None:
        self.refresh_queue()
        self.set_interval(POLL_SECONDS, self.refresh_queue)

    def refresh_queue(self) -> None:
        from sdstudio.core.runs import queue as run_queue
        from sdstudio.core.paths import runs_root

        try:
            items = run_queue.load(runs_root()).items
        except (SdstudioError, OSError) as exc:
            lines = (f"queue: {exc}",)
        else:
            lines = tuple(queue_lines(items, max(20, self.size.width or 40)))
        if lines == self._shown:
            return
        self._shown = lines
        self.set_class(not lines, "-empty")
        waiting = sum(1 for line in lines if " queued " in line)
        self.update("\n".join([f"[b]Queue[/b] ({waiting} waiting; `sdstudio queue`)", *lines]) if lines else "")
