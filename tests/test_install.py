"""sdstudio installed from its wheel, not run from the checkout: the demo model, the sample data and
the configs come with it (package data, found with importlib.resources), every shipped config
loads by name from an empty folder, and the user's work goes to ~/sdstudio, never into
site-packages. The full round trip (pip, a venv, training, export) is .ci/wheel_check.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

INSTALLED_PROBE = r"""
import json, sys
from pathlib import Path
from sdstudio.core import paths
from sdstudio.core.config import load_config
from sdstudio.core.errors import SdstudioError
from sdstudio.core.config_copy import copy_config
from sdstudio.core.shipped_configs import shipped_configs

out = {"package": str(Path(paths.__file__).parents[1]), "shipped": str(paths.shipped_root()),
       "checkout": paths.is_source_checkout(), "demo": str(paths.demo_model_dir()), "home": str(paths.home()),
       "configs": {}}
for c in shipped_configs():
    try:
        out["configs"][c.name] = load_config(c.name).to_dict()
    except SdstudioError as exc:  # the SD 1.5 / SDXL configs name folders the user supplies
        out["configs"][c.name] = str(exc)
copy = copy_config("demo-text2image", "mine.toml")
out["copy"] = load_config(copy).to_dict()
try:
    import os
    os.environ["SDSTUDIO_HOME"] = str(Path(paths.__file__).parents[1] / "runs")
    paths.home()
    out["home_in_package"] = "accepted"
except SdstudioError as exc:
    out["home_in_package"] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel setuptools builds from this checkout (pyproject.toml + setup.py, as `pip wheel .`
    does), unpacked as pip installs a pure-Python wheel. Built outside the checkout: nothing is
    left in it."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp),
                    "build", "--build-base", str(tmp / "build"),
                    "bdist_wheel", "--dist-dir", str(tmp / "dist"), "--bdist-dir", str(tmp / "bdist")],
                   cwd=REPO, check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("sdstudio-*.whl")
    assert wheel.stat().st_size <= 40_000_000
    zipfile.ZipFile(wheel).extractall(tmp / "site")
    return tmp / "site"


def test_the_wheel_carries_model_data_and_configs_and_writes_only_to_the_home(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDSTUDIO_") and k not in ("PYTHONPATH", "XDG_CONFIG_HOME")}
    env.update(PYTHONPATH=str(installed), HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-c", INSTALLED_PROBE], cwd=tmp_path / "empty", env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    package = installed / "sdstudio"
    assert got["package"] == str(package) and not got["checkout"]  # the wheel's copy, not this checkout
    assert got["shipped"] == str(package / "_shipped")
    assert (Path(got["demo"]) / "model_index.json").is_file() and Path(got["demo"]).is_relative_to(package)
    assert got["home"] == str(tmp_path / "home" / "sdstudio")  # ~/sdstudio: outside the installation
    configs = got["configs"]
    assert {"demo-dreambooth", "demo-text2image", "demo-dreambooth-prior", "sd15-dreambooth", "sdxl-text2image"} <= set(configs)
    for name, loaded in configs.items():  # found by name; the ones for a model you supply say which folder is missing
        assert isinstance(loaded, dict) if name.startswith("demo-") else "folder not found" in loaded, (name, loaded)
    assert Path(configs["demo-dreambooth"]["instance_data_dir"]) == package / "_shipped/data/dreambooth/pink-heart"
    assert Path(configs["demo-text2image"]["train_data_dir"]) == package / "_shipped/data/shapes"
    # the class images the prior config generates are written into the home, not the package
    assert Path(configs["demo-dreambooth-prior"]["class_data_dir"]).parent == tmp_path / "home/sdstudio/.class-images"
    assert Path(got["copy"]["train_data_dir"]) == package / "_shipped/data/shapes"  # the copy's paths are absolute
    assert (tmp_path / "empty" / "mine.toml").is_file()
    assert "inside the Python installation" in got["home_in_package"]
