"""The home for the user's work: $SDSTUDIO_HOME, then $SDSTUDIO_RUNS, then runs_dir in the settings
file, then (a source checkout) models/; never a folder inside the Python installation. The pickers'
models folder and `sdstudio runs` follow it."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from sdstudio.cli import main
from sdstudio.core import paths
from sdstudio.core.catalog import known_models
from sdstudio.core.errors import SdstudioError
from sdstudio.core.io import atomic


def test_home_resolution_order_and_never_inside_site_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("SDSTUDIO_HOME", "SDSTUDIO_RUNS"):
        monkeypatch.delenv(var, raising=False)
    settings = tmp_path / "cfg" / "config.toml"
    monkeypatch.setenv("SDSTUDIO_CONFIG", str(settings))
    assert paths.home_source() == (paths.PROJECT_ROOT / "models", "the source checkout's models/")  # as before

    settings.parent.mkdir()
    settings.write_text('runs_dir = "../work"\n')  # relative to the settings file, like train_config
    assert paths.home_source() == (tmp_path / "work", f"runs_dir in {settings}")
    monkeypatch.setenv("SDSTUDIO_RUNS", str(tmp_path / "runs"))
    assert paths.home() == tmp_path / "runs" == paths.runs_root()
    monkeypatch.setenv("SDSTUDIO_HOME", str(tmp_path / "home"))
    assert paths.home_source() == (tmp_path / "home", "$SDSTUDIO_HOME")

    # the pickers' models folder is in the home; `sdstudio runs` names the home
    (tmp_path / "home" / "models" / "my-base").mkdir(parents=True)
    (tmp_path / "home" / "models" / "my-base" / "model_index.json").write_text("{}")
    assert str(tmp_path / "home" / "models" / "my-base") in [e.value for e in known_models()]
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"home: {tmp_path / 'home'} ($SDSTUDIO_HOME)"

    site = Path(sysconfig.get_paths()["purelib"])
    stray = site / f"sdstudio-test-{os.getpid()}.txt"
    try:  # every sdstudio write goes through core/io/atomic, which refuses the installation
        with pytest.raises(PermissionError, match="does not write inside the Python installation"):
            atomic.write_text(stray, "x")
        assert not stray.exists()
    finally:
        stray.unlink(missing_ok=True)
    monkeypatch.setenv("SDSTUDIO_HOME", str(site / "sdstudio-runs"))
    with pytest.raises(SdstudioError, match=r"\$SDSTUDIO_HOME: .* inside the Python installation"):
        paths.home()
    monkeypatch.delenv("SDSTUDIO_HOME")
    monkeypatch.delenv("SDSTUDIO_RUNS")
    settings.write_text(f'runs_dir = "{paths.PACKAGE_DIR / "runs"}"\n')
    with pytest.raises(SdstudioError, match="runs_dir in .*inside the Python installation"):
        paths.home()
    settings.write_text("runs_dir = 3\n")
    with pytest.raises(SdstudioError, match="'runs_dir' must be a folder path"):
        paths.home()
