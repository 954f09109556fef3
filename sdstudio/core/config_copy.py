"""`sdstudio configs copy`: an editable copy of a shipped config that works from wherever it is saved.

The copy keeps the file's comments and order; each relative path becomes the absolute path it meant
(the installed sample data; written folders such as class images in the home, see
shipped_configs.rebase_written). Absolute rather than copied data: the sample images stay one set,
and the user points a copy at their own folders by editing one line.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from sdstudio.core.config import PATH_FIELDS
from sdstudio.core.errors import SdstudioError
from sdstudio.core.io.toml_text import dumps_toml
from sdstudio.core.shipped_configs import find_shipped, rebase_written

MODEL_FIELDS = ("pretrained_model_name_or_path", "pretrained_vae_model_name_or_path")


def copy_config(name: str, dest: str | os.PathLike[str] | None = None, overwrite: bool = False) -> Path:
    """Write an editable copy of a shipped config (comments kept, relative paths made absolute)."""
    from sdstudio.core.io.atomic import write_text

    source = find_shipped(name)
    if source is None:
        raise SdstudioError(f"{name}: no shipped config of that name (`sdstudio configs` lists them)")
    target = Path(dest).expanduser() if dest else Path.cwd() / source.name
    if target.is_dir():
        target = target / source.name
    if target.suffix != ".toml":
        raise SdstudioError(f"{target}: a config copy needs a .toml file name")
    if target.exists() and not overwrite:
        raise SdstudioError(f"{target} exists; pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise SdstudioError(f"{target.parent}: no such folder")
    write_text(target, absolute_paths_text(source))
    return target


_LINE = re.compile(r'^(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"(?P<value>[^"\\]*)"(?P<rest>\s*(#.*)?)$')


def absolute_paths_text(source: Path) -> str:
    """The config's text with each relative path value replaced by the absolute path it means."""
    text = source.read_text(encoding="utf-8")
    rebased = rebase_written(tomllib.loads(text), source)
    lines = [f"# An editable copy of sdstudio's shipped config \"{source.stem}\"; its relative paths were made "
             "absolute."]
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and _is_relative_path(m["key"], m["value"]):
            value = rebased.get(m["key"], m["value"])
            if value == m["value"]:
                value = str((source.resolve().parent / value).resolve())
            line = dumps_toml({m["key"]: value}).rstrip("\n") + m["rest"]
        lines.append(line)
    return "\n".join(lines) + "\n"


def _is_relative_path(key: str, value: str) -> bool:
    """A value load_config would resolve against the file's folder (a model field only when it
    starts with '.': 'demo' and hub ids are names)."""
    if key in MODEL_FIELDS:
        return value.startswith(".")
    return key in PATH_FIELDS and not os.path.isabs(os.path.expanduser(value))
