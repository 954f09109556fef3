"""The studio's own settings file: theme, image renderer, keymap, default training config.

    ~/.config/sdstudio/config.toml   (or $SDSTUDIO_CONFIG; $XDG_CONFIG_HOME is honoured)

    theme = "dark"                   # "dark", "light" or any Textual theme name
    images = "auto"                  # auto | sixel | kitty | halfcell | unicode
    train_config = "~/my-run.toml"   # what the Train form starts from
    detach_runs = "auto"             # ctrl+r trains in the background: auto (on an SSH login) | always | never
    runs_dir = "~/sdstudio"          # the home for runs, merges and exports (read by core/paths.py)
    [keymap]                         # binding id = "key[,key...]"
    "screen.checkpoints" = "3,f3"
    "checkpoints.export" = "x"

A missing file is fine; a broken one is refused with its path and the key at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.user_config import config_path, read_user_config  # noqa: F401 - config_path: its old home

RENDERERS = ("auto", "sixel", "kitty", "halfcell", "unicode")
THEMES = {"dark": "textual-dark", "light": "textual-light"}
DETACH_CHOICES = ("auto", "always", "never")


@dataclass
class Settings:
    theme: str = "textual-dark"
    images: str = "auto"
    train_config: Path | None = None
    detach_runs: str = "auto"
    keymap: dict[str, str] = field(default_factory=dict)
    path: Path | None = None  # the file they came from, if any


def _bad(path: Path, key: str, message: str) -> SdstudioError:
    return SdstudioError(f"{path}: '{key}' {message}")


def parse_settings(data: dict[str, Any], path: Path) -> Settings:
    """Check a parsed settings table; unknown keys are refused so typos do not pass silently."""
    known = {"theme", "images", "train_config", "keymap", "detach_runs", "runs_dir"}  # runs_dir: core/paths.py
    for key in data:
        if key not in known:
            raise _bad(path, key, f"is not a setting (known: {', '.join(sorted(known))})")
    settings = Settings(path=path)
    theme = data.get("theme", "dark")
    if not isinstance(theme, str) or not theme:
        raise _bad(path, "theme", "must be a theme name such as \"dark\" or \"light\"")
    settings.theme = THEMES.get(theme, theme)
    images = data.get("images", "auto")
    if images not in RENDERERS:
        raise _bad(path, "images", f"must be one of {', '.join(RENDERERS)}, got {images!r}")
    settings.images = images
    train_config = data.get("train_config")
    if train_config is not None:
        if not isinstance(train_config, str):
            raise _bad(path, "train_config", "must be a path to a training TOML file")
        settings.train_config = (path.parent / Path(train_config).expanduser()).resolve()
    detach_runs = data.get("detach_runs", "auto")
    if detach_runs not in DETACH_CHOICES:
        raise _bad(path, "detach_runs", f"must be one of {', '.join(DETACH_CHOICES)}, got {detach_runs!r}")
    settings.detach_runs = detach_runs
    runs_dir = data.get("runs_dir")
    if runs_dir is not None and (not isinstance(runs_dir, str) or not runs_dir.strip()):
        raise _bad(path, "runs_dir", "must be a folder path such as \"~/sdstudio\"")
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict):
        raise _bad(path, "keymap", "must be a table of binding id = \"key\"")
    for binding_id, keys in keymap.items():
        if not isinstance(keys, str) or not keys.strip():
            raise _bad(path, f"keymap.{binding_id}", "must be a key string such as \"x\" or \"ctrl+e,f9\"")
    settings.keymap = dict(keymap)
    return settings


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings file, or defaults when there is none."""
    data, path = read_user_config(path)
    return parse_settings(data, path) if path.exists() else Settings()
