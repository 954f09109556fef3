"""`sdstudio doctor --json`: one object with a verdict per fact, and exit 1 with the fix when
something blocks training (here: a models folder that cannot be read)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdstudio.cli import main


def test_doctor_json_names_a_blocking_problem_and_exits_non_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SDSTUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SDSTUDIO_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "models").write_text("a file where the models folder should be")

    assert main(["doctor", "--json", "--no-demo"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"sdstudio", "ok", "home", "blocking", "checks"} and report["ok"] is False
    assert report["home"] == str(tmp_path / "home")
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("python", "torch", "cuda", "diffusers", "transformers", "peft", "accelerate", "home", "disk",
                 "models folder", "terminal images"):
        assert name in checks and checks[name]["status"] in ("ok", "warn", "fail", "info") and checks[name]["value"]
    assert report["blocking"] == ["models folder"]
    assert "cannot be read" in checks["models folder"]["value"] and checks["models folder"]["advice"]
    assert "supported" in checks["diffusers"]["value"]  # against pyproject's range, from the installed metadata

    (tmp_path / "home" / "models").unlink()  # fixed: the same check passes, the exit code says so
    assert main(["doctor", "--no-demo"]) in (0, 1)
    text = capsys.readouterr().out
    assert "models folder" in text and "not created yet" in text and "FAIL  models folder" not in text
