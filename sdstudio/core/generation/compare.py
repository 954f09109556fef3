"""Comparisons: the same prompt and seeds across LoRAs, checkpoints of a run, or base models.

A `Variant` is one column of the comparison (a base model plus the LoRAs stacked on it). The
variants of one base model share one `Generator`, so going from checkpoint to checkpoint only
swaps adapters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdstudio.core.errors import SdstudioError
from sdstudio.core.generation.generator import GeneratedImage, GenerateOptions, Generator, LoraSpec, save_png
from sdstudio.core.lora.identity import identify
from sdstudio.core.lora.spec import parse_lora_spec
from sdstudio.core.runs.run_dir import RunDir


@dataclass(frozen=True)
class Variant:
    label: str
    model: str
    loras: tuple[LoraSpec, ...] = ()
    file_label: str = ""  # what its image files are named after, when not the label


@dataclass(frozen=True)
class Comparison:
    images: dict[tuple[int, int], Path]  # (variant index, seed) -> PNG
    grid: Path | None


def lora_specs(arg: str) -> list[LoraSpec]:
    """`FILE[:SCALE]` -> one spec; `RUN_DIR[:SCALE]` -> one per checkpoint of the run, oldest first."""
    path, scale = parse_lora_spec(arg)
    if path.is_dir():
        run = RunDir(path)
        if not run.exists():
            raise SdstudioError(f"{path}: a folder but not a run (no run.toml); pass a LoRA file or a run folder")
        from sdstudio.core.full.checkpoint_model import is_full_run

        if is_full_run(run):
            raise SdstudioError(f"--lora {arg}: a full fine-tune run's checkpoints are models, not LoRAs; pass "
                                f"--model {path}@STEP (one --model per checkpoint to compare them)")
        cps = run.checkpoints()
        if not cps:
            raise SdstudioError(f"{path}: this run has no checkpoints yet")
        return [LoraSpec(cp.weights, scale, identify(cp.weights).label, f"{run.name}-step{cp.step}") for cp in cps]
    if not path.is_file():
        raise SdstudioError(f"--lora {arg}: no such file or run folder")
    ident = identify(path)
    return [LoraSpec(path, scale, ident.label if ident.run else "")]


def plan_variants(models: list[str], lora_args: list[str], compare_loras: bool = False) -> list[Variant]:
    """The columns to generate: one per base model if several; else one per checkpoint of a run
    given with --lora; else, when comparing, one per LoRA; else one with every LoRA stacked."""
    from sdstudio.core.models import resolve_base_model

    models = models or ["demo"]
    groups = [lora_specs(a) for a in lora_args]
    runs = [g for a, g in zip(lora_args, groups) if parse_lora_spec(a)[0].is_dir()]
    fixed = tuple(g[0] for a, g in zip(lora_args, groups) if not parse_lora_spec(a)[0].is_dir())
    if len(models) > 1:
        if runs:
            raise SdstudioError("several --model and a run folder as --lora: compare either base models or "
                                "checkpoints, not both")
        return [Variant(resolve_base_model(m).name, m, fixed) for m in models]
    model = models[0]
    if len(runs) > 1:
        raise SdstudioError("give at most one run folder as --lora (its checkpoints are the grid's columns)")
    if runs:
        return [Variant(spec.label, model, fixed + (spec,), _file_label(spec)) for spec in runs[0]]
    if compare_loras and len(fixed) > 1:
        return [Variant(f"{s.name} ({s.scale:g})", model, (s,)) for s in fixed]
    label = " + ".join(f"{s.name} ({s.scale:g})" for s in fixed) or resolve_base_model(model).name
    return [Variant(label, model, fixed)]


def _file_label(spec: LoraSpec) -> str:
    """A checkpoint column's images keep their names ("<run>-step-400-seed1.png") whatever its label says."""
    ident = identify(spec.path)
    return f"{ident.run} step {ident.step}" if ident.run else spec.name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "image"


def run_comparison(variants: list[Variant], opts: GenerateOptions, out_dir: str | os.PathLike[str],
                   grid: bool = False, on_image: Callable[[Variant, GeneratedImage, Path], None] | None = None,
                   generator_factory: Callable[[str], Generator] = Generator) -> Comparison:
    """Generate every variant x seed into `out_dir` (PNG with parameters) and optionally a grid."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[tuple[int, int], Path] = {}
    results: dict[tuple[int, int], GeneratedImage] = {}
    gen: Generator | None = None
    current = None
    for i, variant in enumerate(variants):
        if gen is None or current != variant.model:
            if gen is not None:
                gen.close()
            gen, current = generator_factory(variant.model), variant.model
        gen.set_loras(list(variant.loras))
        for item in gen.generate(opts):
            name = f"seed{item.seed}.png" if len(variants) == 1 else f"{i:02d}-{_slug(variant.file_label or variant.label)}-seed{item.seed}.png"
            path = save_png(item, out / name)
            paths[(i, item.seed)] = path
            results[(i, item.seed)] = item
            if on_image:
                on_image(variant, item, path)
    grid_path = None
    if grid:
        from sdstudio.core.io.atomic import save_image
        from sdstudio.core.generation.contact_sheet import make_grid

        rows = [[results[(i, s)].image for i in range(len(variants))] for s in opts.seeds]
        sheet = make_grid(rows, [f"seed {s}" for s in opts.seeds], [v.label for v in variants], title=opts.prompt)
        grid_path = out / "grid.png"
        save_image(sheet, grid_path)
    return Comparison(paths, grid_path)
