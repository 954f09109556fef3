"""The user's folders and the shipped demo: the home (free disk, writable), the models folder
(readable) and whether the demo model loads."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sdstudio.core.doctor.check import FAIL, OK, WARN, Check

GIB = 1024 ** 3
MIN_FREE_GIB, LOW_FREE_GIB = 1.0, 20.0  # a run's checkpoints and samples: MBs (demo) to several GB (SDXL)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def home_checks() -> list[Check]:
    """Where runs go, whether it can be written, and the free disk under it."""
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.paths import home_source

    try:
        home, where = home_source()
    except SdstudioError as exc:
        return [Check("home", FAIL, str(exc), "set $SDSTUDIO_HOME or runs_dir in ~/.config/sdstudio/config.toml")]
    base = _existing_parent(home)
    if home.exists() and not home.is_dir():
        return [Check("home", FAIL, f"{home} ({where}) is not a folder",
                      "point $SDSTUDIO_HOME (or runs_dir in ~/.config/sdstudio/config.toml) at a folder")]
    if not _writable(base):
        return [Check("home", FAIL, f"{home} ({where}): {base} cannot be written",
                      f"fix the permissions of {base} or choose another home ($SDSTUDIO_HOME)")]
    state = "" if home.exists() else ", created at the first run"
    checks = [Check("home", OK, f"{home} ({where}{state})")]
    free = shutil.disk_usage(base).free / GIB
    if free < MIN_FREE_GIB:
        checks.append(Check("disk", FAIL, f"{free:.1f} GiB free under {base}",
                            "free some space or move the home to a larger disk ($SDSTUDIO_HOME)"))
    elif free < LOW_FREE_GIB:
        checks.append(Check("disk", WARN, f"{free:.1f} GiB free under {base}",
                            "enough for small runs; an SDXL run with many checkpoints can need several GB "
                            "(checkpoints_total_limit keeps fewer)"))
    else:
        checks.append(Check("disk", OK, f"{free:.1f} GiB free under {base}"))
    return checks


def _writable(folder: Path) -> bool:
    """Really try (os.access says yes to root on a read-only mount): a temporary file, removed at once."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sdstudio-doctor-"):
            return True
    except OSError:
        return False


def models_folder_checks() -> list[Check]:
    """The pickers' models folders can be listed (a missing one is fine: nothing to list yet)."""
    from sdstudio.core.catalog import MODELS_ENV
    from sdstudio.core.paths import models_dir

    folders = [models_dir()] + [Path(p.strip()).expanduser() for p in os.environ.get(MODELS_ENV, "").split(os.pathsep)
                                if p.strip()]
    checks = []
    for folder in folders:
        if not folder.exists():
            checks.append(Check("models folder", OK, f"{folder}: not created yet (put base models there to pick them)"))
            continue
        try:
            count = sum(1 for _ in folder.iterdir())
        except OSError as exc:
            checks.append(Check("models folder", FAIL, f"{folder}: cannot be read ({exc.strerror or exc})",
                                f"make {folder} a folder you can read (chmod u+rx), or move what is there aside"))
            continue
        checks.append(Check("models folder", OK, f"{folder}: readable, {count} entries"))
    return checks


def demo_model_check() -> list[Check]:
    """Load the built-in demo pipeline for real (about 2 s on a CPU)."""
    from sdstudio.core.models import load_pipeline
    from sdstudio.core.paths import demo_model_dir

    try:
        pipe = load_pipeline("demo")
    except Exception as exc:  # noqa: BLE001 - reported with the fix
        return [Check("demo model", FAIL, f"{demo_model_dir()}: does not load ({exc})",
                      "reinstall sdstudio (`pip install --force-reinstall sdstudio`, or a full clone)")]
    params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    return [Check("demo model", OK, f"loads ({params:.1f} M UNet parameters, {demo_model_dir()})")]
