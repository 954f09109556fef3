"""SDXL LoRA training speed: sdstudio's trainer at 1024 px, batch 1, against diffusers' SDXL script.

    python benchmarks/sdxl_speed.py                          # CUDA: SDXL architecture, random weights
    python benchmarks/sdxl_speed.py --diffusers-script PATH  # also time diffusers' train_text_to_image_lora_sdxl.py
    python benchmarks/sdxl_speed.py --cpu-smoke              # the tiny SDXL model on the CPU (checks the script)

The model is SDXL base 1.0's architecture (UNet 2.6 B parameters: widths 320/640/1280, transformer
depth 1/2/10, CLIP ViT-L + OpenCLIP ViT-bigG, the 4-level VAE) built from its published config values
with random weights, saved once as a diffusers folder (no download). Both trainers run text-to-image
LoRA (rank 4, UNet only, bf16, batch 1, no gradient checkpointing) on the same folder of 1024 px
pictures. Seconds per step are differential: (wall(N2) - wall(N1)) / (N2 - N1), so loading, caching
and saving cancel out for both; sdstudio's row also gives the median of its own per-step timings. diffusers' example scripts are not part of the pip package: pass
the script from a diffusers checkout of the installed version with --diffusers-script.
Prints JSON lines, then a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import make_captioned  # noqa: E402

SDXL_UNET = {
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10], "attention_head_dim": [5, 10, 20], "cross_attention_dim": 2048,
    "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32,
}
SDXL_VAE = {
    "sample_size": 1024, "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "scaling_factor": 0.13025, "force_upcast": True,
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
          "projection_dim": 768, "hidden_act": "quick_gelu"}
CLIP_BIGG = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20,
             "projection_dim": 1280, "hidden_act": "gelu"}


def build_sdxl(out: Path) -> Path:
    """SDXL base 1.0's architecture with random weights, as a diffusers folder."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from sdstudio.demo.tiny import write_clip_tokenizer

    torch.manual_seed(0)
    words = "a photo of a red disc".split()
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(out / "tokenizer", words))
    tok2 = CLIPTokenizer.from_pretrained(write_clip_tokenizer(out / "tokenizer_2", words))
    ids = {"vocab_size": len(tok), "max_position_embeddings": 77, "bos_token_id": tok.bos_token_id,
           "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    pipe = StableDiffusionXLPipeline(
        vae=AutoencoderKL(**SDXL_VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG, **ids)), tokenizer=tok, tokenizer_2=tok2,
        unet=UNet2DConditionModel(**SDXL_UNET),
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="leading"),
        add_watermarker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


STEP_SECONDS: list[float] = []  # sdstudio's own per-step times (StepEvent), for a steady-state median


def time_sdstudio(model: Path, data: Path, out: Path, steps: int, resolution: int, mp: str) -> float:
    from sdstudio.core import events as ev
    from sdstudio.core.config import build_config
    from sdstudio.core.training.trainer import train

    cfg = build_config({"pretrained_model_name_or_path": str(model), "train_data_dir": str(data),
                        "resolution": resolution, "train_batch_size": 1, "max_train_steps": steps, "rank": 4,
                        "mixed_precision": mp, "checkpointing_steps": 10**6, "validation_steps": 10**6,
                        "num_validation_images": 1, "validation_num_inference_steps": 1, "output_dir": str(out)})
    STEP_SECONDS.clear()
    t0 = time.perf_counter()
    train(cfg, on_event=lambda e: STEP_SECONDS.append(e.seconds) if isinstance(e, ev.StepEvent) else None)
    return time.perf_counter() - t0


def time_diffusers(script: Path, model: Path, data: Path, out: Path, steps: int, resolution: int, mp: str) -> float:
    cmd = ["accelerate", "launch", "--num_processes", "1", "--mixed_precision", mp, str(script),
           f"--pretrained_model_name_or_path={model}", f"--train_data_dir={data}", f"--resolution={resolution}",
           "--train_batch_size=1", f"--max_train_steps={steps}", "--rank=4", f"--mixed_precision={mp}",
           f"--output_dir={out}", "--checkpointing_steps=1000000", "--seed=0", "--caption_column=text"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="the tiny SDXL model on the CPU, a few steps")
    ap.add_argument("--diffusers-script", type=Path, help="train_text_to_image_lora_sdxl.py of diffusers' examples")
    ap.add_argument("--model", type=Path, help="an existing SDXL diffusers folder instead of random weights")
    ap.add_argument("--steps", default="10,30", help="N1,N2 optimizer steps for the differential timing")
    args = ap.parse_args(argv)
    import torch

    n1, n2 = (int(x) for x in args.steps.split(","))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sdxl-speed-") as tmp:
        root = Path(tmp)
        if args.cpu_smoke:
            from sdstudio.demo.tiny import build_tiny_sdxl_pipeline

            model, resolution, mp, n1, n2 = build_tiny_sdxl_pipeline(root / "model"), 32, "no", 4, 12
        else:
            if not torch.cuda.is_available():
                print("no CUDA device: run with --cpu-smoke, or on a GPU", file=sys.stderr)
                return 2
            model, resolution, mp = args.model or build_sdxl(root / "model"), 1024, "bf16"
        data = make_captioned(root / "data", 8, resolution)
        header = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                  "resolution": resolution, "batch": 1, "mixed_precision": mp, "steps": [n1, n2]}
        print(json.dumps({"header": header}))
        count = iter(range(1000))
        runners = {"sdstudio": lambda n: time_sdstudio(model, data, root / f"ours-{next(count)}", n, resolution, mp)}
        if args.diffusers_script:
            runners["diffusers"] = lambda n: time_diffusers(args.diffusers_script, model, data, root / f"theirs-{n}", n,
                                                            resolution, mp)
        for name, run in runners.items():
            if name == "sdstudio":
                run(n1)  # in-process: the first run pays one-time imports and kernel selection; a subprocess pays them each time
            t1, t2 = run(n1), run(n2)
            row = {"row": name, "s_per_step": (t2 - t1) / (n2 - n1), "wall_n1_s": t1, "wall_n2_s": t2}
            if name == "sdstudio":  # the trainer's own timing of the steady steps (the first two warm up)
                row["s_per_step_median"] = statistics.median(STEP_SECONDS[2:] or STEP_SECONDS)
            rows.append(row)
            print(json.dumps(row))
    print(f"\n{'trainer':<10} {'s/step':>8} {'median':>8}")
    for row in rows:
        median = f"{row['s_per_step_median']:8.3f}" if "s_per_step_median" in row else f"{'-':>8}"
        print(f"{row['row']:<10} {row['s_per_step']:8.3f} {median}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
