"""Do the same settings learn the same? sdstudio against diffusers' train_dreambooth_lora.py on the demo model.

The settings (issue 20): pink-heart, 300 steps, batch 4, 64 px, rank 8, lr 2e-3 constant, no
flip, no SNR weighting, fp32, AdamW defaults (weight decay 1e-2, eps 1e-8), grad norm 1.0.
Each training seed's LoRA is judged by the demo judge on `--judge-seeds` pictures of the
instance prompt (sampling seeds from 1000, the demo sampler settings), and counts as
"learned the subject" per picture that shows a pink heart.

    python benchmarks/parity_dreambooth.py --seeds 0-7
    python benchmarks/parity_dreambooth.py --seeds 0-7 --diffusers-script scratch/train_dreambooth_lora.py
    python benchmarks/parity_dreambooth.py --seeds 0-7 --label uncached --set cache_latents=false

The script is run as `python SCRIPT --pretrained_model_name_or_path ... --seed N` (it needs
torchvision for its transforms; where that does not import, give a copy whose transforms are
replaced by PIL/numpy equivalents). Trained weights are kept under --work and reused on the
next call, so a second call only judges. Prints each seed's count, the pooled rate with a 95 %
interval from a bootstrap over training seeds (pictures of one seed share one LoRA, so they are
not independent; the Wilson interval of the pooled count, shown beside it, ignores that), and
with both trainers the difference with its own bootstrap interval.

Measured (2 shared CPU cores, diffusers 0.42.1, script at diffusers 58eb52c, training seeds 0-9):
sdstudio 101/160 = 63.1 % [51.9, 72.5], the script 97/160 = 60.6 % [53.1, 67.5], difference
+2.5 points [-10.6, +14.4]: the same learning within the noise of training seeds (one seed
ranges from 4/16 to 13/16 with either trainer).
"""

from __future__ import annotations

import argparse
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STEPS = 300
SETTINGS: dict[str, Any] = {
    "instance_prompt": "a sks shape", "resolution": 64, "train_batch_size": 4, "max_train_steps": STEPS,
    "learning_rate": 2e-3, "lr_scheduler": "constant", "lr_warmup_steps": 0, "rank": 8, "random_flip": False,
    "snr_gamma": None, "mixed_precision": "no", "center_crop": False,
}
JUDGE_SEEDS_FROM = 1000


def seed_list(text: str) -> list[int]:
    """'0-7' or '0,3,5' -> seeds."""
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def _value(text: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def train_sdstudio(seed: int, out: Path, overrides: dict[str, Any]) -> Path:
    from sdstudio.core.config import TrainConfig, build_config
    from sdstudio.core.paths import data_dir, demo_model_dir
    from sdstudio.core.training.trainer import train

    weights = out / "pytorch_lora_weights.safetensors"
    if weights.exists():
        return weights
    values = {**SETTINGS, "pretrained_model_name_or_path": str(demo_model_dir()),
              "instance_data_dir": str(data_dir() / "dreambooth" / "pink-heart"), "seed": seed,
              "output_dir": str(out / "run"), "checkpointing_steps": STEPS, "num_validation_images": 0,
              "validation_loss": False, **overrides}
    cfg: TrainConfig = build_config(values, "parity_dreambooth.py")
    run = train(cfg)
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(run.checkpoint(STEPS).weights.read_bytes())
    return weights


def train_script(script: Path, seed: int, out: Path) -> Path:
    from sdstudio.core.paths import data_dir, demo_model_dir

    weights = out / "pytorch_lora_weights.safetensors"
    if weights.exists():
        return weights
    s = SETTINGS
    cmd = [sys.executable, str(script), "--pretrained_model_name_or_path", str(demo_model_dir()),
           "--instance_data_dir", str(data_dir() / "dreambooth" / "pink-heart"), "--instance_prompt", s["instance_prompt"],
           "--resolution", str(s["resolution"]), "--train_batch_size", str(s["train_batch_size"]),
           "--max_train_steps", str(STEPS), "--learning_rate", str(s["learning_rate"]), "--lr_scheduler", s["lr_scheduler"],
           "--lr_warmup_steps", "0", "--rank", str(s["rank"]), "--mixed_precision", "no", "--seed", str(seed),
           "--checkpointing_steps", str(10 * STEPS), "--output_dir", str(out)]
    log = out.parent / f"{out.name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=script.parent)
    return weights


def judge(generator: Any, weights: Path, prompt: str, seeds: list[int]) -> int:
    """Pictures of `prompt` that show the subject, with this LoRA."""
    from sdstudio.core.generation.generator import LoraSpec
    from sdstudio.demo import evaluation

    generator.set_loras([LoraSpec(weights)])
    try:
        images = [im for _, _, im in evaluation.sample(generator.pipe, [prompt], seeds)]
    finally:
        generator.forget_loras()
    return round(evaluation.subject_rate(images) * len(images))


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return mid - half, mid + half


def bootstrap(hits: list[int], per: int, rounds: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the pooled rate, resampling training seeds (clusters)."""
    rng = random.Random(seed)
    rates = sorted(sum(rng.choices(hits, k=len(hits))) / (per * len(hits)) for _ in range(rounds))
    return rates[int(0.025 * rounds)], rates[int(0.975 * rounds) - 1]


def bootstrap_difference(a: list[int], b: list[int], per: int, rounds: int = 10_000, seed: int = 1) -> tuple[float, float]:
    """95 % interval of rate(a) - rate(b), each resampled over its own training seeds."""
    rng = random.Random(seed)
    diffs = sorted(sum(rng.choices(a, k=len(a))) / (per * len(a)) - sum(rng.choices(b, k=len(b))) / (per * len(b))
                   for _ in range(rounds))
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def summary(name: str, hits: list[int], per: int) -> str:
    total, n = sum(hits), per * len(hits)
    lo, hi = bootstrap(hits, per)
    wl, wh = wilson(total, n)
    return (f"{name}: {total}/{n} = {total / n:.1%}  95 % bootstrap over seeds [{lo:.1%}, {hi:.1%}]  "
            f"(Wilson over pictures [{wl:.1%}, {wh:.1%}])")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-7", help="training seeds, e.g. 0-7 or 0,2,5")
    ap.add_argument("--judge-seeds", type=int, default=16, help="pictures judged per training seed")
    ap.add_argument("--diffusers-script", type=Path, help="train_dreambooth_lora.py (or a copy) to compare with")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sdstudio-parity",
                    help="where trained weights are kept and reused (default: under the system temp folder)")
    ap.add_argument("--label", default="sdstudio", help="sub-folder of --work for this sdstudio variant")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a config override (TOML value)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from sdstudio.core.generation.generator import Generator
    from sdstudio.core.paths import demo_model_dir

    torch.set_num_threads(args.threads)
    seeds = seed_list(args.seeds)
    overrides = {k: _value(v) for k, _, v in (s.partition("=") for s in args.set)}
    judge_seeds = list(range(JUDGE_SEEDS_FROM, JUDGE_SEEDS_FROM + args.judge_seeds))
    prompt = SETTINGS["instance_prompt"]
    generator = Generator(str(demo_model_dir()), device="cpu")
    trainers = [(args.label, lambda s: train_sdstudio(s, args.work / args.label / f"seed{s}", overrides))]
    if args.diffusers_script:
        script = args.diffusers_script.resolve()
        trainers.append(("diffusers", lambda s: train_script(script, s, args.work / "diffusers" / f"seed{s}")))
    print(f"settings: {SETTINGS}" + (f"; sdstudio overrides {overrides}" if overrides else ""))
    results: dict[str, list[int]] = {name: [] for name, _ in trainers}
    for seed in seeds:
        cells = []
        for name, make in trainers:
            t0 = time.perf_counter()
            weights = make(seed)
            t1 = time.perf_counter()
            hits = judge(generator, weights, prompt, judge_seeds)
            results[name].append(hits)
            cells.append(f"{name} {hits:>2}/{len(judge_seeds)} (train {t1 - t0:.0f} s, judge {time.perf_counter() - t1:.0f} s)")
        print(f"seed {seed}: " + "  ".join(cells), flush=True)
    per = len(judge_seeds)
    for name, hits in results.items():
        print(summary(name, hits, per))
    if len(results) == 2:
        a, b = results.values()
        lo, hi = bootstrap_difference(a, b, per)
        print(f"{args.label} - diffusers: {(sum(a) - sum(b)) / (per * len(seeds)):+.1%}  95 % interval [{lo:+.1%}, {hi:+.1%}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
