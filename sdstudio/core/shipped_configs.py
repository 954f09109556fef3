"""The shipped training configs: found by name from any folder, listed, and copied for editing.

`sdstudio train demo-dreambooth` works wherever the shell is: a config argument that names no
existing file is looked up among the shipped configs (`demo-dreambooth` or `demo-dreambooth.toml`).

Shipped configs give paths relative to their own file, as every config may. Two kinds are treated
differently so that nothing is ever written inside the installed package:
* read-only inputs (the sample images) stay where they are shipped;
* folders the trainer writes (`class_data_dir`, `output_dir`) that point into the shipped `models/`
  folder mean "in the home": `../../models/.class-images/x` becomes `<home>/.class-images/x`. In a
  source checkout the home is `models/` itself, so the path is the same as it always was.

`configs copy` (core/config_copy.py) writes an editable copy with absolute paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core import paths
from sdstudio.core.errors import ConfigError

WRITTEN_FIELDS = ("class_data_dir", "output_dir")  # the trainer writes into these folders


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
