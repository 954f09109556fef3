"""Where things live: what sdstudio ships (the demo model, the sample data, the configs) and the
user's home (runs, merges, exports, generated pictures, their own base models).

Shipped files are package data. In a wheel they sit in the package's `_shipped/` folder (setup.py
maps the repository's top-level `models/demo` and `data/` there) and are found with
`importlib.resources`; in a source checkout they are the repository's own `models/` and `data/`.

The home is one folder that holds the user's work, resolved in this order:

1. `$SDSTUDIO_HOME`;
2. `$SDSTUDIO_RUNS` (its older name, still honoured: tests and the queue runner's child use it);
3. `runs_dir` in `~/.config/sdstudio/config.toml` (relative to that file's folder);
4. a source checkout's `models/` (as it always was; git ignores all but `models/demo`);
5. `~/sdstudio`: visible in the user's home, found by `ls`, kept across upgrades and reinstalls
   of Python environments, and never inside the Python installation.

Runs are its direct sub-folders; `merges/`, `generated/`, `models/` (base models the pickers list)
and the queue files sit beside them. Nothing is ever written inside the installed package: a home
that resolves into it (or into site-packages) is refused with the setting to change.
"""

from __future__ import annotations

import os
import sysconfig
from functools import lru_cache
from importlib import resources
from pathlib import Path

from sdstudio.core.errors import SdstudioError

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout, or site-packages when installed
PACKAGE_DIR = Path(__file__).resolve().parents[1]
DEMO_MODEL_NAME = "demo"
HOME_ENV, RUNS_ENV = "SDSTUDIO_HOME", "SDSTUDIO_RUNS"
DEFAULT_HOME = "~/sdstudio"


def shipped_root() -> Path:
    """The folder holding the shipped `models/demo` and `data/`: the package's `_shipped/` in an
    installed wheel, else (a source checkout) the repository root."""
    packaged = resources.files("sdstudio") / "_shipped"
    if packaged.is_dir():
        return Path(str(packaged))  # a wheel installs unzipped: the resource is a real folder
    return PROJECT_ROOT


def demo_model_dir() -> Path:
    """The shipped demo base model (a diffusers folder)."""
    return Path(os.environ.get("SDSTUDIO_DEMO_MODEL", shipped_root() / "models" / "demo"))


def data_dir() -> Path:
    """Sample datasets and configs the project ships."""
    return shipped_root() / "data"


def configs_dir() -> Path:
    """The shipped training configs (`sdstudio configs` lists them)."""
    return data_dir() / "configs"


@lru_cache(maxsize=1)
def _site_dirs() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    return tuple(Path(paths[k]).resolve() for k in ("purelib", "platlib") if k in paths)


def is_source_checkout() -> bool:
    """sdstudio runs from a clone (editable install or PYTHONPATH), not from an installed wheel."""
    if (resources.files("sdstudio") / "_shipped").is_dir():
        return False
    return (PROJECT_ROOT / "pyproject.toml").is_file() and not inside_installation(PROJECT_ROOT)


def inside_installation(path: Path) -> bool:
    """Is `path` inside the installed package or Python's site-packages (where nothing may be written)?"""
    path = Path(path).expanduser().resolve()
    return any(path == g or g in path.parents for g in (PACKAGE_DIR, *_site_dirs()))


def home_source() -> tuple[Path, str]:
    """The home folder and where that choice came from (shown by `sdstudio runs` and the doctor)."""
    for var in (HOME_ENV, RUNS_ENV):
        value = os.environ.get(var, "").strip()
        if value:
            return _checked(_absolute(Path(value)), f"${var}"), f"${var}"
    from sdstudio.core.user_config import read_user_config

    values, path = read_user_config()
    runs_dir = values.get("runs_dir")
    if runs_dir is not None:
        if not isinstance(runs_dir, str) or not runs_dir.strip():
            raise SdstudioError(f"{path}: 'runs_dir' must be a folder path such as \"~/sdstudio\"")
        where = f"runs_dir in {path}"
        return _checked(_absolute(path.parent / Path(runs_dir).expanduser()), where), where
    if is_source_checkout():
        return PROJECT_ROOT / "models", "the source checkout's models/"
    return _absolute(Path(DEFAULT_HOME)), "default"


def _absolute(path: Path) -> Path:
    """Absolute and without `..`, symbolic links kept (the home shows as the user named it)."""
    return Path(os.path.abspath(path.expanduser()))


def _checked(path: Path, where: str) -> Path:
    if inside_installation(path):
        raise SdstudioError(f"{where}: {path} is inside the Python installation, where sdstudio never writes; "
                            f"choose a folder of your own (e.g. {DEFAULT_HOME})")
    return path


def home() -> Path:
    """The folder for the user's work (see the module docstring for the order)."""
    return home_source()[0]


def runs_root() -> Path:
    """Default parent of run directories: the home (runs are its direct sub-folders)."""
    return home()


def models_dir() -> Path:
    """Where the user keeps base models for the pickers: `<home>/models` (a source checkout's home
    is its models/ folder already)."""
    root = home()
    return root if is_source_checkout() and root == PROJECT_ROOT / "models" else root / "models"
