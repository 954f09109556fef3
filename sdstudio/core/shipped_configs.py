"""The shipped training configs: found by name from any folder, listed, and copied for editing.

`sdstudio train demo-dreambooth` works wherever the shell is: a config argument that names no
existing file is looked up among the shipped configs (`demo-dreambooth` or `demo-dreambooth.toml`).

Shipped configs give paths relative to their own file, as every config may. Two kinds are treated
differently so that nothing is ever written inside the installed package:
* read-only inputs (the sample images) stay where they are shipped;
* folders the trainer writes (`class_data_dir`, `output_dir`) that point into the shipped `models/`
  folder mean "in the home": `../../models/.class-images/x` becomes `<home>/.class-images/x`. In a
  source checkout the home is `models/` itself, so the path is the same as it always was.

`configs copy` writes an editable copy whose relative paths are rewritten to absolute ones (the
packaged sample data, the home for written folders), so the copy works from wherever it is saved.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core import paths
from sdstudio.core.errors import SdstudioError

WRITTEN_FIELDS = ("class_data_dir", "output_dir")  # the trainer writes into these folders
MODEL_FIELDS = ("pretrained_model_name_or_path", "pretrained_vae_model_name_or_path")


@dataclass(frozen=True)
class ShippedConfig:
    name: str
    path: Path
    summary: str  # the file's first comment line


def shipped_configs() -> list[ShippedConfig]:
    """Every shipped config, by name."""
    out = []
    for path in sorted(paths.configs_dir().glob("*.toml")):
        out.append(ShippedConfig(path.stem, path, _summary(path)))
    return out


def _summary(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def find_shipped(name: str) -> Path | None:
    """The shipped config called `name` (with or without `.toml`), or None."""
    if not name or os.sep in name or (os.altsep and os.altsep in name):
        return None
    candidate = paths.configs_dir() / (name if name.endswith(".toml") else name + ".toml")
    return candidate if candidate.is_file() else None


def resolve_config_arg(arg: str | os.PathLike[str]) -> Path:
    """A config argument as a file: an existing path wins, else a shipped config of that name;
    neither is an error that lists the shipped names."""
    path = Path(arg).expanduser()
    if path.exists():
        return path
    shipped = find_shipped(str(arg))
    if shipped is not None:
        return shipped
    from sdstudio.core.errors import ConfigError

    names = ", ".join(c.name for c in shipped_configs())
    raise ConfigError("config", f"file not found: {path}, and no shipped config has that name (shipped: {names}; "
                      "`sdstudio configs` lists them)", str(arg))


def is_shipped(path: str | os.PathLike[str]) -> bool:
    try:
        return Path(path).resolve().parent == paths.configs_dir().resolve()
    except OSError:
        return False


def rebase_written(values: dict[str, Any], toml_path: Path) -> dict[str, Any]:
    """A shipped config's written folders that point into the shipped models/ folder, moved into the home."""
    shipped_models = (paths.shipped_root() / "models").resolve()
    out = dict(values)
    for name in WRITTEN_FIELDS:
        value = out.get(name)
        if not isinstance(value, str) or os.path.isabs(os.path.expanduser(value)):
            continue
        target = (toml_path.resolve().parent / value).resolve()
        if target == shipped_models or shipped_models in target.parents:
            out[name] = str(paths.home() / target.relative_to(shipped_models))
    return out


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
    import tomllib

    from sdstudio.core.config import PATH_FIELDS
    from sdstudio.core.io.toml_text import dumps_toml

    text = source.read_text(encoding="utf-8")
    rebased = rebase_written(tomllib.loads(text), source)
    lines = [f"# An editable copy of sdstudio's shipped config \"{source.stem}\"; its relative paths were made "
             "absolute."]
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and _is_relative_path(m["key"], m["value"], PATH_FIELDS):
            value = rebased.get(m["key"], m["value"])
            if value == m["value"]:
                value = str((source.resolve().parent / value).resolve())
            line = dumps_toml({m["key"]: value}).rstrip("\n") + m["rest"]
        lines.append(line)
    return "\n".join(lines) + "\n"


def _is_relative_path(key: str, value: str, path_fields: tuple[str, ...]) -> bool:
    """A value load_config would resolve against the file's folder (a model field only when it
    starts with '.': 'demo' and hub ids are names)."""
    if key in MODEL_FIELDS:
        return value.startswith(".")
    return key in path_fields and not os.path.isabs(os.path.expanduser(value))
