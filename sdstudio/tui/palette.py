"""The command palette's list: the five screens, then every action of the current screen once.

Textual's own list knows only the app's keys that are usable right now; a person looking for a
key wants every action the screen has, also one not usable now (it says why when chosen), and
each once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen


def palette_commands(app: App[Any], screen: Screen, textual_commands: Iterable[SystemCommand],
                     screens: Sequence[tuple[str, str]]) -> Iterable[SystemCommand]:
    """`screens`: (mode, key) of each screen. Then the screen's and the app's keys (also those the
    screen turns off right now) and the focused widget's named keys (the contact sheet's w);
    then Textual's own commands, less any twin."""
    seen: set[str] = set()
    titles: set[str] = set()
    for mode, key in screens:
        seen.add(f"app.switch_mode('{mode}')")
        title = f"Go to the {mode.title()} screen"
        titles.add(title.lower())
        yield SystemCommand(title, f"key: F{key}, or {key} outside a text field", partial(app.switch_mode, mode))
    # what the keys do here now, then the screen's keys it hides right now (check_action False)
    listed = [(a.node, a.binding, a.enabled) for a in screen.active_bindings.values()]
    listed += [(screen, b, False) for b in Binding.make_bindings(screen.BINDINGS)]
    for node, binding, enabled in listed:
        own = node in (screen, app)
        if not binding.description or binding.action in seen or not (own or binding.tooltip):
            continue
        seen.add(binding.action)
        title = binding.tooltip or binding.description
        titles.add(title.lower())
        help_text = f"key: {app.get_key_display(binding)}" + ("" if enabled else " (not available now)")
        yield SystemCommand(title, help_text, partial(_run, app, node, binding.action, title))
    for command in textual_commands:
        if command.title.lower() not in titles:
            yield command


def _run(app: App[Any], node: Any, action: str, title: str) -> None:
    """Run an action chosen in the palette; one the screen turns off right now only says so."""
    name = action.split("(", 1)[0].removeprefix("app.")
    if not node.check_action(name, ()):
        app.notify(f"{title}: not available right now", severity="warning")
        return
    app.call_later(node.run_action, action)
