"""TOML text from plain data: run.toml, saved configs and queued configs.

Python reads TOML (tomllib) but has no writer, and a run.toml needs only scalars, lists and
nested tables, so this small one saves a dependency.
"""

from __future__ import annotations

import json
from typing import Any


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps_toml(data: dict[str, Any], _prefix: str = "") -> str:
    """A small TOML writer: scalars, lists and nested tables; None values are left out."""
    lines: list[str] = []
    for key, value in data.items():
        if value is not None and not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            name = f"{_prefix}{key}"
            lines.append(f"\n[{name}]")
            lines.append(dumps_toml(value, name + ".").rstrip("\n"))
    return "\n".join(line for line in lines if line) + "\n"
