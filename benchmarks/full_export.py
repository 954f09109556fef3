"""Figures of the full fine-tune export: key counts and layout (the project's family detector), file
sizes fp16 vs fp32, and the round trip through diffusers' `from_single_file` (max abs difference to
the checkpoint's weights), for the tiny SD and SDXL test models and the shipped demo model.

    python benchmarks/full_export.py [--dir FOLDER]

Each model gets a full run written in the trainer's checkpoint layout (tests/full_helpers.py: the
base's UNet and text encoder(s) plus seeded noise, raw and EMA), then `sdstudio export` defaults
(fp16, EMA) and `--dtype fp32` of its latest checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _diff(pipe, checkpoint: Path, comps: tuple[str, ...]) -> dict[str, float]:
    from full_helpers import component_state

    out = {}
    for comp in comps:
        got = getattr(pipe, comp).state_dict()
        want = component_state(checkpoint / "ema" / comp, comp)
        out[comp] = max((got[k if k in got else k.removeprefix("text_model.")].float() - v.float()).abs().max().item()
                        for k, v in want.items() if not k.endswith("position_ids"))
    return out


def measure(name: str, base: Path, root: Path, sdxl: bool) -> None:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from safetensors import safe_open

    from full_helpers import write_full_run
    from sdstudio.core.full.export import export_full_checkpoint
    from sdstudio.core.merge.sources import open_model
    from sdstudio.core.models import detect_family, family_from_keys

    comps = ("unet", "text_encoder", "text_encoder_2") if sdxl else ("unet", "text_encoder")
    run = write_full_run(base, root / name, steps=(1,), components=comps, shard="10MB")
    base_src = open_model(str(base))
    base_keys = len(base_src.keys())
    base_src.close()
    print(f"{name}: base as a single file would hold {base_keys} tensors")
    for dtype in ("fp16", "fp32"):
        t0 = time.perf_counter()
        out = export_full_checkpoint(run.path, dtype=dtype)
        seconds = time.perf_counter() - t0
        with safe_open(str(out), "pt") as fh:
            keys = list(fh.keys())
        family = detect_family(keys)
        family_from_keys(keys, str(out))
        prefixes = sorted({".".join(k.split(".")[:2 if k.startswith(("conditioner.", "model.")) else 1]) for k in keys})
        cls = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
        extra = {"add_watermarker": False} if sdxl else {"safety_checker": None, "requires_safety_checker": False}
        pipe = cls.from_single_file(str(out), config=str(base), local_files_only=True, **extra)
        diffs = _diff(pipe, run.checkpoint(1).path, comps)
        print(f"  {dtype}: {out.name}: {len(keys)} tensors, family {family}, prefixes {prefixes}, "
              f"{out.stat().st_size / 2**20:.2f} MiB, export {seconds:.2f} s")
        print("    from_single_file max |diff| to the EMA weights: "
              + ", ".join(f"{c} {d:.2e}" for c, d in diffs.items()))


def main() -> None:
    from sdstudio.core.paths import demo_model_dir
    from sdstudio.demo.tiny import build_tiny_pipeline, build_tiny_sdxl_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="full-export-"))
    root.mkdir(parents=True, exist_ok=True)
    measure("tiny-sd", build_tiny_pipeline(root / "tiny-sd-base", seed=0), root, sdxl=False)
    measure("tiny-sdxl", build_tiny_sdxl_pipeline(root / "tiny-sdxl-base", seed=0), root, sdxl=True)
    measure("demo", demo_model_dir(), root, sdxl=False)


if __name__ == "__main__":
    main()
