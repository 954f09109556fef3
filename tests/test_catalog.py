"""What the pickers offer: the demo first, models from the models folders and $SDSTUDIO_MODELS,
then every run's checkpoints and exports; each value is a name the model resolver accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdstudio.core.catalog import merge_candidates
from sdstudio.core.models import locate_model
from test_tui_fixtures import make_run


def test_catalog_lists_demo_models_folders_and_run_loras(runs_root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shelf = tmp_path / "shelf"
    (shelf / "my-model").mkdir(parents=True)
    (shelf / "my-model" / "model_index.json").write_text("{}")
    (shelf / "merged.safetensors").write_bytes(b"")
    (shelf / "notes.txt").write_text("not a model")
    monkeypatch.setenv("SDSTUDIO_MODELS", str(shelf))
    run = make_run(runs_root, checkpoints=(10, 20))
    (run.exports_dir).mkdir(parents=True, exist_ok=True)
    (run.exports_dir / "demo-run-step20.safetensors").write_bytes(b"")

    entries = merge_candidates()
    assert entries[0].value == "demo" and entries[0].kind == "model"
    values = [e.value for e in entries]
    assert str(shelf / "my-model") in values and str(shelf / "merged.safetensors") in values
    assert str(shelf / "notes.txt") not in values
    loras = [e for e in entries if e.kind in ("checkpoint", "export")]
    assert [Path(e.value).parent.name for e in loras if e.kind == "checkpoint"] == ["step-000020", "step-000010"]
    assert any(e.kind == "export" and e.value.endswith("demo-run-step20.safetensors") for e in loras)
    for e in entries:  # every entry is something the one resolver can find
        assert locate_model(e.value)[0] in ("demo", "folder", "single_file")
