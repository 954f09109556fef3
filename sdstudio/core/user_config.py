"""The user's settings file, read once for the engine and the studio alike.

    ~/.config/sdstudio/config.toml   (or $SDSTUDIO_CONFIG; $XDG_CONFIG_HOME is honoured)

The engine needs one key of it (`runs_dir`, the home folder; see core/paths.py); the studio checks
the rest (tui/settings.py). A missing file is an empty table; broken TOML is refused with its path.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from sdstudio.core.errors import SdstudioError


def config_path() -> Path:
    """Where the settings file is read from ($SDSTUDIO_CONFIG wins, for tests and odd setups)."""
    env = os.environ.get("SDSTUDIO_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sdstudio" / "config.toml"


def read_user_config(path: Path | None = None) -> tuple[dict[str, Any], Path]:
    """The settings file's table (empty when there is no file) and its path."""
    path = path or config_path()
    if not path.exists():
        return {}, path
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh), path
    except tomllib.TOMLDecodeError as exc:
        raise SdstudioError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise SdstudioError(f"{path}: cannot read ({exc})") from None
