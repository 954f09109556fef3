"""The slider's live preview equals the file the user will write, and goes back to A exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from merge_helpers import a_file, b_file, lora_modules, model_b_dir, write_kohya_lora  # noqa: F401
from sdstudio.core.merge.merger import merge_files
from sdstudio.core.merge.preview import PreviewMerger


def _image(pipe) -> np.ndarray:
    import torch

    out = pipe(prompt="a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="np")
    return np.asarray(out.images)


def _params(pipe) -> dict:
    return {f"{c}.{k}": v.detach().clone() for c in ("unet", "text_encoder", "vae")
            for k, v in getattr(pipe, c).state_dict().items()}


@pytest.fixture()
def pipe_a(a_file: Path, tiny_model_dir: Path):
    from sdstudio.core.models import load_pipeline

    return load_pipeline(str(a_file), config=str(tiny_model_dir))


def test_preview_at_m_equals_the_streamed_merge_loaded_back(pipe_a, a_file: Path, b_file: Path,
                                                             tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    from sdstudio.core.models import load_pipeline

    original = _params(pipe_a)
    preview = PreviewMerger(pipe_a, b_file)
    preview.apply(0.9)  # slider moved around first: each apply starts from A, not from the last value
    preview.apply(0.3)
    merged = load_pipeline(str(merge_files(a_file, tmp_path / "m.safetensors", b_file, multiplier=0.3,
                                           dtype="fp32")), config=str(tiny_model_dir))
    live, on_disk = _params(pipe_a), _params(merged)
    assert all(torch.equal(live[k], on_disk[k]) for k in on_disk)
    np.testing.assert_array_equal(_image(pipe_a), _image(merged))
    preview.restore()
    assert all(torch.equal(v, original[k]) for k, v in _params(pipe_a).items())


def test_lora_preview_scales_like_a_fused_file(pipe_a, a_file: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    from sdstudio.core.models import load_pipeline

    lora = write_kohya_lora(tmp_path / "style.safetensors", lora_modules(seed=5), alpha=1.0)
    preview = PreviewMerger(pipe_a, loras=[(str(lora), 1.0)])
    preview.apply(0.7)
    fused = load_pipeline(str(merge_files(a_file, tmp_path / "f.safetensors", loras=[(str(lora), 0.7)],
                                          dtype="fp32")), config=str(tiny_model_dir))
    live, on_disk = _params(pipe_a), _params(fused)
    for key in on_disk:
        torch.testing.assert_close(live[key], on_disk[key], rtol=0, atol=1e-6)
    changed = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert not torch.equal(live[changed], _params(load_pipeline(str(a_file), config=str(tiny_model_dir)))[changed])
