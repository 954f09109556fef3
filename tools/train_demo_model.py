"""Train the built-in demo model from scratch (a small Stable-Diffusion-architecture model).

    python tools/train_demo_model.py --out models/demo-work            # VAE, then UNet + text encoder
    python tools/train_demo_model.py --out models/demo-work --phase unet --unet-minutes 30
    cp -r models/demo-work/latest/. models/demo/                        # after checking it

Phase "vae": an AutoencoderKL (4x downsampling) learns to redraw a wider world than the
captioned set (every shape incl. the DreamBooth subject, palette and random colours), so
that a new subject survives encode/decode. Phase "unet": the UNet and a small CLIP text
encoder learn jointly on data/shapes (latents cached), epsilon prediction, min-SNR loss
weighting, EMA weights. Every --save-minutes the EMA model is saved as a complete
StableDiffusionPipeline folder at OUT/latest (and OUT/step-N) so it can be judged while
training goes on. Runs on a CPU (2 threads) in about half an hour.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

from sdstudio.core.paths import data_dir
from sdstudio.demo.shapes import ALL_COLOURS, ALL_SHAPES, BACKGROUNDS, SHAPES, Scene, random_scene, render

RES = 64
TRAIN_TIMESTEPS = 1000
# Sampler settings the model is meant to be used with (also written to models/README.md).
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 4.0
EXTRA_WORDS = ["shape", "pink", "heart", "sks"]  # known to the tokenizer; only "shape" is trained


def vae_config() -> dict[str, Any]:
    return {
        "sample_size": RES, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "block_out_channels": [16, 32, 64],
        "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
        "layers_per_block": 1, "norm_num_groups": 8,
    }


def unet_config(cross_dim: int) -> dict[str, Any]:
    return {
        "sample_size": RES // 4, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
        "block_out_channels": [32, 64, 128],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": cross_dim, "attention_head_dim": 4, "norm_num_groups": 8,
    }


def scheduler_kwargs() -> dict[str, Any]:
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "num_train_timesteps": TRAIN_TIMESTEPS, "steps_offset": 1, "prediction_type": "epsilon"}


# ---------------------------------------------------------------- data
def to_tensor(images: list[Any]) -> Any:
    import numpy as np
    import torch

    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def wide_images(count: int, seed: int) -> Any:
    """Scenes beyond the captioned set: every shape, palette and random colours and backgrounds."""
    rng = random.Random(seed)
    colours, backgrounds = list(ALL_COLOURS), list(BACKGROUNDS)
    images = []
    for _ in range(count):
        shape = rng.choice(ALL_SHAPES)
        colour = rng.choice(colours)
        rgb = None if rng.random() < 0.7 else tuple(rng.randrange(256) for _ in range(3))
        scene = random_scene(rng, colour, shape, rng.choice(backgrounds), RES, min_frac=0.25, max_frac=0.8)
        img = render(scene, RES, rgb=rgb)  # type: ignore[arg-type]
        if rng.random() < 0.3:  # a background outside the palette
            from PIL import Image, ImageDraw
            from sdstudio.demo.shapes import SUPERSAMPLE, draw_shape

            k = SUPERSAMPLE
            bg = tuple(rng.randrange(256) for _ in range(3))
            big = Image.new("RGB", (RES * k, RES * k), bg)
            draw_shape(ImageDraw.Draw(big), scene.shape, scene.cx * k, scene.cy * k, scene.size * k,
                       rgb or ALL_COLOURS[colour])
            img = big.resize((RES, RES), Image.Resampling.LANCZOS)
        images.append(img)
    return to_tensor(images)


def load_captioned(folder: Path) -> tuple[Any, list[str]]:
    from PIL import Image

    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
    images = [Image.open(folder / r["file_name"]).convert("RGB") for r in rows]
    return to_tensor(images), [r["text"] for r in rows]


def caption_words(captions: list[str]) -> list[str]:
    return sorted({w for c in captions for w in c.split()} | set(EXTRA_WORDS))


def vary_caption(caption: str, rng: random.Random) -> str:
    """Sometimes leave out the colour, name the shape "shape" or drop the background, so that
    partial prompts ("a red shape", "a circle") mean something; sometimes the empty prompt (CFG)."""
    if rng.random() < 0.1:
        return ""
    words = caption.split()  # a COLOUR SHAPE on a BG background
    colour, shape, bg = words[1], words[2], words[5]
    if rng.random() < 0.15:
        shape = "shape"
    text = f"a {shape}" if rng.random() < 0.15 else f"a {colour} {shape}"
    if rng.random() < 0.15:
        return text
    return f"{text} on a {bg} background"


# ---------------------------------------------------------------- phases
def train_vae(out: Path, steps: int, batch: int, seed: int, log: Any) -> Any:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    captioned, _ = load_captioned(data_dir() / "shapes")
    pool = torch.cat([wide_images(2000, seed), captioned])
    vae = AutoencoderKL(**vae_config())
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    t0 = time.time()
    for step in range(1, steps + 1):
        x = pool[torch.randint(0, len(pool), (batch,))]
        if step <= steps * 0.8:  # mostly 32 px crops: 4x cheaper, and convolutions do not mind
            oy, ox = (int(v) for v in torch.randint(0, RES // 2 + 1, (2,)) // 8 * 8)
            x = torch.cat([x, pool[torch.randint(0, len(pool), (batch,))]])[:, :, oy:oy + RES // 2, ox:ox + RES // 2]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / (x[0].numel())
        loss = torch.nn.functional.mse_loss(rec, x) + 0.5 * (rec - x).abs().mean() + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            log(f"vae step {step}/{steps} loss {loss.item():.4f} kl {kl.item():.3f} {time.time() - t0:.0f}s")
    vae.eval()
    with torch.no_grad():
        mean = torch.cat([vae.encode(captioned[i:i + 64]).latent_dist.mean for i in range(0, len(captioned), 64)])
    vae.register_to_config(scaling_factor=float(1.0 / mean.std()))
    vae.save_pretrained(out / "vae", safe_serialization=True)
    log(f"vae saved, scaling_factor {vae.config.scaling_factor:.4f}")
    return vae


def sharpen_decoder(out: Path, steps: int, batch: int, seed: int, log: Any) -> Any:
    """Train the VAE's decoder further on full-size pictures with the encoder frozen: the latent
    space (and so a UNet trained on it) stays valid while the pictures get sharper."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed + 1)
    vae = AutoencoderKL.from_pretrained(out / "vae")
    captioned, _ = load_captioned(data_dir() / "shapes")
    pool = torch.cat([wide_images(2000, seed + 1), captioned, captioned.flip(-1)])
    vae.requires_grad_(False)
    with torch.no_grad():
        dists = [vae.encode(pool[i:i + 64]).latent_dist for i in range(0, len(pool), 64)]
        mean, std = torch.cat([d.mean for d in dists]), torch.cat([d.std for d in dists])
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=steps, pct_start=0.05)
    t0 = time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(pool), (batch,))
        z = mean[idx] + std[idx] * torch.randn_like(mean[idx])
        x = pool[idx]
        rec = vae.decode(z).sample
        loss = torch.nn.functional.mse_loss(rec, x) + (rec - x).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            log(f"decoder step {step}/{steps} loss {loss.item():.4f} {time.time() - t0:.0f}s")
    vae.eval().requires_grad_(False)
    vae.save_pretrained(out / "vae-sharp", safe_serialization=True)
    log("sharpened decoder saved to vae-sharp")
    return vae


class Ema:
    """Exponential moving average of a module's weights (warm-up as in the EMA literature)."""

    def __init__(self, module: Any, decay: float) -> None:
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def update(self, module: Any) -> None:
        import torch

        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for s, p in zip(self.shadow.parameters(), module.parameters()):
                s.lerp_(p.detach(), 1 - d)


def build_text_encoder(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(cfg)


def save_pipeline(folder: Path, vae: Any, unet: Any, text_encoder: Any, tokenizer: Any) -> None:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    scheduler = DPMSolverMultistepScheduler(**scheduler_kwargs(), algorithm_type="dpmsolver++", solver_order=2)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(tmp, safe_serialization=True)
    (tmp / "sdstudio_demo.json").write_text(json.dumps(
        {"num_inference_steps": DEFAULT_STEPS, "guidance_scale": DEFAULT_GUIDANCE, "resolution": RES}, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def train_unet(out: Path, vae: Any, minutes: float, batch: int, lr: float, seed: int, save_minutes: float,
               log: Any, init_from: Path | None = None) -> None:
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import compute_snr
    from transformers import CLIPTokenizer

    from sdstudio.demo.tiny import write_clip_tokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    images, captions = load_captioned(data_dir() / "shapes")
    tok_dir = write_clip_tokenizer(out / "tokenizer-src", caption_words(captions))
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    if init_from:  # continue from a saved pipeline (fresh optimizer, EMA starts at its weights)
        from transformers import CLIPTextModel

        text_encoder = CLIPTextModel.from_pretrained(init_from / "text_encoder")
        unet = UNet2DConditionModel.from_pretrained(init_from / "unet")
        log(f"continuing from {init_from}")
    else:
        text_encoder = build_text_encoder(tokenizer)
        unet = UNet2DConditionModel(**unet_config(text_encoder.config.hidden_size))
    n_params = sum(p.numel() for m in (vae, unet, text_encoder) for p in m.parameters())
    log(f"parameters: {n_params / 1e6:.2f} M ({n_params * 4 / 2**20:.1f} MiB in float32)")

    vae.eval().requires_grad_(False)
    with torch.no_grad():  # cache latent distributions of the images and their mirror images
        both = torch.cat([images, images.flip(-1)])
        dists = [vae.encode(both[i:i + 64]).latent_dist for i in range(0, len(both), 64)]
        lat_mean = torch.cat([d.mean for d in dists])
        lat_std = torch.cat([d.std for d in dists])
    all_captions = captions + captions
    scale = vae.config.scaling_factor
    prompt_cache: dict[str, Any] = {}

    def token_ids(texts: list[str]) -> Any:
        for t in texts:
            if t not in prompt_cache:
                prompt_cache[t] = tokenizer(t, padding="max_length", max_length=tokenizer.model_max_length,
                                            truncation=True, return_tensors="pt").input_ids[0]
        return torch.stack([prompt_cache[t] for t in texts])

    noise_sched = DDPMScheduler(**scheduler_kwargs())
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
    ema_unet, ema_text = Ema(unet, 0.999), Ema(text_encoder, 0.999)
    unet.train()
    text_encoder.train()
    t0 = last_save = time.time()
    step = 0
    warmup = 200
    while True:
        step += 1
        elapsed = time.time() - t0
        frac = min(1.0, elapsed / (minutes * 60))
        cur_lr = lr * min(1.0, step / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = cur_lr
        idx = torch.randint(0, len(lat_mean), (batch,))
        latents = (lat_mean[idx] + lat_std[idx] * torch.randn_like(lat_mean[idx])) * scale
        ids = token_ids([vary_caption(all_captions[i], rng) for i in idx.tolist()])
        noise = torch.randn_like(latents)
        t = torch.randint(0, TRAIN_TIMESTEPS, (batch,))
        noisy = noise_sched.add_noise(latents, noise, t)
        cond = text_encoder(ids)[0]
        pred = unet(noisy, t, cond).sample
        snr = compute_snr(noise_sched, t)
        weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 for epsilon prediction
        loss = (((pred - noise) ** 2).mean(dim=(1, 2, 3)) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_unet.update(unet)
        ema_text.update(text_encoder)
        if step % 50 == 0:
            log(f"unet step {step} loss {loss.item():.4f} lr {cur_lr:.2e} {elapsed:.0f}s")
        done = elapsed >= minutes * 60
        if done or time.time() - last_save >= save_minutes * 60:
            save_pipeline(out / "latest", vae, ema_unet.shadow, ema_text.shadow, tokenizer)
            shutil.copytree(out / "latest", out / f"step-{step:06d}", dirs_exist_ok=True)
            log(f"saved step {step} after {elapsed / 60:.1f} min")
            last_save = time.time()
        if done:
            break


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="work folder (saves land in OUT/latest)")
    ap.add_argument("--phase", choices=["all", "vae", "unet", "decoder"], default="all")
    ap.add_argument("--vae-steps", type=int, default=1500)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--decoder-steps", type=int, default=1200)
    ap.add_argument("--unet-minutes", type=float, default=30.0, help="wall-clock training budget of the UNet")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init-from", type=Path, default=None, help="continue from a saved pipeline folder")
    ap.add_argument("--save-minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1, help="2 threads are slower than 1 on a busy CPU")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from diffusers import AutoencoderKL

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = args.out / "train.log"

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with open(log_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    if args.phase == "decoder":
        sharpen_decoder(args.out, args.decoder_steps, args.vae_batch, args.seed, log)
        return 0
    if args.phase in ("all", "vae"):
        vae = train_vae(args.out, args.vae_steps, args.vae_batch, args.seed, log)
    else:
        vae = AutoencoderKL.from_pretrained(args.out / "vae")
    if args.phase in ("all", "unet"):
        train_unet(args.out, vae, args.unet_minutes, args.batch, args.lr, args.seed, args.save_minutes, log,
                   args.init_from)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
