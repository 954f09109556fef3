"""What scoring a checkpoint costs on this machine: the demo judge, CLIP ViT-B/32 and DINOv2-small.

Speed does not depend on the weights, so CLIP and DINO are built with their published
architectures (transformers' CLIPConfig defaults are ViT-B/32; DINOv2-small: 384 wide,
12 layers, 14 px patches) and random weights, saved to a temporary folder and loaded by path,
exactly as a downloaded model would be. Needs a scored-or-not run with samples:

    python benchmarks/score_cost.py RUN_DIR
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def build_models(folder: Path) -> tuple[Path, Path]:
    import torch
    from transformers import (BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              CLIPTokenizer, Dinov2Config, Dinov2Model)

    from sdstudio.demo.tiny import write_clip_tokenizer

    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "tok", "a sks shape".split()))
    CLIPModel(CLIPConfig()).save_pretrained(folder / "clip")
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tok).save_pretrained(folder / "clip")
    dino = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                        patch_size=14, image_size=518)
    Dinov2Model(dino).save_pretrained(folder / "dino")
    BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                      do_center_crop=True).save_pretrained(folder / "dino")
    return folder / "clip", folder / "dino"


def main() -> None:
    import torch

    from sdstudio.core.runs.run_dir import RunDir
    from sdstudio.core.training.scoring import RunScorer

    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="sdstudio-score-cost-"))
    work = tmp / "run"
    shutil.copytree(args.run, work, ignore=shutil.ignore_patterns("exports"))  # the scores go to the copy
    (work / "scores.jsonl").unlink(missing_ok=True)
    clip, dino = build_models(tmp / "models")
    run = RunDir(work)
    for name in ("demo", "clip", "dino"):
        t0 = time.perf_counter()
        scorer = RunScorer(run, [name], clip_model=str(clip), dino_model=str(dino))
        table = scorer.score(rescore=True)
        rows = [r for r in table.rows if name in r.seconds and r.step > 0]  # step 0 also embeds the references
        per = sum(r.seconds[name] for r in rows) / len(rows)
        print(f"{name:>5}: {per:.2f} s per checkpoint ({rows[0].images} samples, {len(scorer.references)} reference "
              f"images embedded once), model load {scorer.load_seconds:.1f} s, {len(rows)} steps in "
              f"{time.perf_counter() - t0:.1f} s, {args.threads} thread(s)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
