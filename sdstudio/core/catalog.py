"""What a user can pick as a model or a LoRA without typing a path: the list behind the pickers.

Known models: the built-in demo, diffusers folders and single files in the home, its models folder
(`core.paths.models_dir`) and `$SDSTUDIO_MODELS` (if set); LoRAs: every run's checkpoints and exports; models
again: full fine-tune runs' checkpoints and exports. Only directory listings, file names and run.toml
files are read (no headers, no weights), so the list is cheap to build when a screen opens. Every
entry's `value` is what `models.locate_model` / `merge.sources.open_model` accept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdstudio.core.filetypes import SINGLE_FILE_SUFFIXES
from sdstudio.core.paths import DEMO_MODEL_NAME, PROJECT_ROOT, models_dir, runs_root

MODELS_ENV = "SDSTUDIO_MODELS"


@dataclass(frozen=True)
class CatalogEntry:
    """One pickable item: `kind` is model | checkpoint | export; `value` is the name or path to use."""

    label: str
    value: str
    kind: str


def model_folders() -> list[Path]:
    """Where models are looked for: the models folder and the home, then
    $SDSTUDIO_MODELS (a path list, like PATH)."""
    folders = [models_dir(), runs_root()]
    for part in os.environ.get(MODELS_ENV, "").split(os.pathsep):
        if part.strip():
            folders.append(Path(os.path.expanduser(part.strip())))
    seen: dict[Path, None] = {}
    for f in folders:
        seen.setdefault(f.resolve() if f.exists() else f, None)
    return list(seen)


def _models_in(folder: Path) -> list[CatalogEntry]:
    try:
        items = sorted(folder.iterdir())
    except OSError:
        return []
    out = []
    for item in items:
        if item.is_dir() and (item / "model_index.json").is_file():
            out.append(CatalogEntry(f"{item.name}  (folder, {_short(folder)})", str(item), "model"))
        elif item.is_file() and item.suffix.lower() in SINGLE_FILE_SUFFIXES:
            out.append(CatalogEntry(f"{item.name}  ({_short(folder)})", str(item), "model"))
    return out


def _short(path: Path) -> str:
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        pass
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def known_models() -> list[CatalogEntry]:
    """The demo first, then the models found in the model folders (the demo's own folder skipped)."""
    from sdstudio.core.paths import demo_model_dir

    entries = [CatalogEntry("demo  (built-in demo model)", DEMO_MODEL_NAME, "model")]
    demo = demo_model_dir().resolve()
    for folder in model_folders():
        entries += [e for e in _models_in(folder) if Path(e.value).resolve() != demo]
    return _unique(entries + run_models())


def run_loras(root: Path | None = None) -> list[CatalogEntry]:
    """Every run's checkpoints (newest run first, highest step first) and its exports."""
    from sdstudio.core.lora.identity import identify
    from sdstudio.core.runs.run_dir import list_runs

    from sdstudio.core.full.checkpoint_model import is_full_run

    entries: list[CatalogEntry] = []
    for run in list_runs(root or runs_root()):
        if is_full_run(run):
            continue  # a full fine-tune's checkpoints and exports are models (run_models)
        for ckpt in sorted(run.checkpoints(), key=lambda c: -c.step):
            if ckpt.weights.is_file():
                entries.append(CatalogEntry(_lora_label(identify(ckpt.weights)), str(ckpt.weights), "checkpoint"))
        try:
            exports = sorted(run.exports_dir.glob("*.safetensors"))
        except OSError:
            exports = []
        entries += [CatalogEntry(_lora_label(identify(e)), str(e), "export") for e in exports]
    return entries


def run_models(root: Path | None = None) -> list[CatalogEntry]:
    """Every full fine-tune run's checkpoints (highest step first; the value names the step folder,
    which loads its EMA weights when it has them) and its exports (files and diffusers folders)."""
    from sdstudio.core.full.checkpoint_model import is_full_run
    from sdstudio.core.full.layout import has_ema
    from sdstudio.core.runs.run_dir import list_runs

    entries: list[CatalogEntry] = []
    for run in list_runs(root or runs_root()):
        if not is_full_run(run):
            continue
        for ckpt in sorted(run.checkpoints(), key=lambda c: -c.step):
            ema = ", EMA" if has_ema(ckpt.path) else ""
            entries.append(CatalogEntry(f"full fine-tune, step {ckpt.step}{ema} · {run.name}", str(ckpt.path), "model"))
        try:
            exports = sorted(p for p in run.exports_dir.iterdir()
                             if p.suffix == ".safetensors" or (p / "model_index.json").is_file())
        except OSError:
            exports = []
        entries += [CatalogEntry(f"full fine-tune export {e.name} · {run.name}", str(e), "model") for e in exports]
    return entries


def _lora_label(ident: Any) -> str:
    """"LoRA checkpoint, step 400 · my-run": kind and step first, the long run name last."""
    step = f"step {ident.step}" if ident.step is not None else ident.name
    return f"LoRA {ident.kind}, {step} · {ident.run}"


def merge_candidates() -> list[CatalogEntry]:
    """What the Merge screen offers for B and C: models, then LoRAs (a LoRA as B means LoRA fuse)."""
    return known_models() + run_loras()


def _unique(entries: list[CatalogEntry]) -> list[CatalogEntry]:
    seen: set[str] = set()
    out = []
    for e in entries:
        if e.value not in seen:
            seen.add(e.value)
            out.append(e)
    return out
