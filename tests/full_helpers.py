"""Full fine-tune runs as the trainer leaves them (core/full/layout.py), built from a tiny base.

Each checkpoint's weights are the base's plus seeded noise (different for the raw and the EMA
weights and for each step), so a test can tell which weights an export or a pipeline carries.
The run.toml is the trainer's (a resolved config with training_method = "full" and the base
model's identity), written through RunDir like the trainer writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def perturbed(module: Any, seed: int, scale: float = 0.05) -> Any:
    """`module` with every float parameter moved by seeded noise (in place; returned)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return module


def write_full_run(base: Path, run_path: Path, steps: tuple[int, ...] = (2, 4), ema: bool = True,
                   components: tuple[str, ...] = ("unet", "text_encoder"), shard: str | None = "200KB",
                   **config: Any) -> Any:
    """A full run of `base` with checkpoints at `steps`: model/<component>/ (and ema/<component>/),
    saved with `save_pretrained(safe_serialization=True)`, sharded at `shard`. Returns its RunDir."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from sdstudio.core.config import build_config
    from sdstudio.core.models import model_identity, resolve_base_model
    from sdstudio.core.runs.run_dir import RunDir

    from conftest import draw_shape_images

    if "train_data_dir" not in config and "instance_data_dir" not in config:
        instance = run_path.parent / f"{run_path.name}-instance"
        draw_shape_images(instance, 2, (230, 30, 30))
        config = {"instance_data_dir": str(instance), "instance_prompt": "a photo of sks dog", **config}
    classes = {"unet": UNet2DConditionModel, "text_encoder": CLIPTextModel,
               "text_encoder_2": CLIPTextModelWithProjection}
    values = {"pretrained_model_name_or_path": str(base), "output_dir": str(run_path), "resolution": 32,
              "training_method": "full", "use_ema": ema, "max_train_steps": max(steps),
              "train_text_encoder": "text_encoder" in components, **config}
    cfg = build_config(values)
    run = RunDir(run_path)
    identity = model_identity(resolve_base_model(str(base)))
    run.write_config(cfg.to_dict(), {"version": "test", "base_model": identity})
    kwargs = {"safe_serialization": True, **({"max_shard_size": shard} if shard else {})}
    for step in steps:
        ckpt = run.checkpoint_path(step)
        for i, comp in enumerate(components):
            for kind, offset in (("model", 0), ("ema", 1)) if ema else (("model", 0),):
                module = classes[comp].from_pretrained(str(base / comp))
                perturbed(module, seed=step * 100 + i * 10 + offset).save_pretrained(str(ckpt / kind / comp), **kwargs)
        (ckpt / "state").mkdir(parents=True, exist_ok=True)
    return run


def component_state(folder: Path, name: str) -> dict[str, Any]:
    """A component's weights as the library loads them from a save_pretrained folder (fp32)."""
    from sdstudio.core.full.loading import load_component

    return load_component(name, folder, None).state_dict()
