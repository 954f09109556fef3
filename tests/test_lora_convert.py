"""`sdstudio convert`: legacy and diffusers LoRAs to kohya and back, and pickles that would run code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import LEGACY_SEED_LORA, needs_shared
from lora_helpers import pickle_storage_locations, write_legacy_attn_procs_lora
from sdstudio.cli import main


class _Exploit:
    """Unpickling this would create a marker file (a stand-in for any code a pickle can run)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path, capsys):
    import torch

    marker = tmp_path / "pwned"
    evil = tmp_path / "custom_checkpoint_0.pkl"
    torch.save({"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight":
                torch.zeros(4, 8), "payload": _Exploit(str(marker))}, evil)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(evil), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and "Nothing from it was executed" in err and str(evil) in err
    assert not marker.exists() and not out.exists()


def test_built_legacy_file_is_a_cuda_pickle_like_the_real_ones(tmp_path: Path):
    """The test's legacy file is what old scripts saved from a GPU: plain torch.load fails on a CPU box."""
    import torch

    legacy = write_legacy_attn_procs_lora(tmp_path / "pytorch_lora_weights.bin")
    assert pickle_storage_locations(legacy) == {"cuda:0"}
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(legacy, weights_only=True)


def test_cli_converts_the_legacy_file_and_reports_it(tmp_path: Path, capsys):
    _convert_legacy_and_check(write_legacy_attn_procs_lora(tmp_path / "pytorch_lora_weights.bin"), tmp_path, capsys)


@needs_shared(LEGACY_SEED_LORA)
def test_cli_converts_the_real_legacy_seed_file(tmp_path: Path, capsys):
    assert pickle_storage_locations(LEGACY_SEED_LORA) == {"cuda:0"}
    _convert_legacy_and_check(LEGACY_SEED_LORA, tmp_path, capsys)


def _convert_legacy_and_check(legacy: Path, tmp_path: Path, capsys) -> None:
    from safetensors import safe_open

    out = tmp_path / "dog.safetensors"
    assert main(["convert", str(legacy), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "attn_procs LoRA, 128 modules (unet), rank 4, alpha 4" in text and "384 tensors" in text
    with safe_open(str(out), framework="pt") as fh:
        assert fh.get_tensor("lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_out_0.alpha").item() == 4.0
        assert fh.metadata()["ss_network_dim"] == "4"
    assert main(["convert", str(legacy), "-o", str(out)]) == 2  # never overwrites silently
    assert "--overwrite" in capsys.readouterr().err


def test_not_a_lora_is_refused_with_the_keys_it_has(tmp_path: Path, capsys):
    from safetensors.torch import save_file
    import torch

    src = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.out.2.weight": torch.zeros(2)}, str(src))
    assert main(["convert", str(src)]) == 2
    assert "not a LoRA file" in capsys.readouterr().err


def _fused_reference(model_dir: Path, weights):
    """Base pipeline with every delta (alpha / rank * up @ down) added by hand: an independent reference."""
    import torch

    from sdstudio.core.models import load_pipeline

    pipe = load_pipeline(str(model_dir))
    with torch.no_grad():
        for (component, path), module in weights.modules.items():
            model = getattr(pipe, component)
            if not hasattr(model, "text_model"):
                path = path.removeprefix("text_model.")
            model.get_submodule(path).weight += module.delta()
    return pipe


def _image(pipe):
    import torch

    return pipe(prompt="a photo of sks dog", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                output_type="np").images[0]


def test_kohya_with_per_module_alpha_converts_to_diffusers_exactly(tiny_model_dir: Path, tmp_path: Path):
    """kohya files may give each module its own alpha; the diffusers output keeps every one."""
    import numpy as np
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from lora_helpers import add_adapters
    from sdstudio.core.lora.convert import convert_file
    from sdstudio.core.lora.formats import parse_lora, read_lora_file, save_lora_file
    from sdstudio.core.models import load_pipeline

    torch.set_num_threads(1)
    pipe = load_pipeline(str(tiny_model_dir))
    add_adapters(pipe, unet_alpha=8.0, text_alpha=2.0, seed=1)
    sd = {f"{c}.{k}": v for c in ("unet", "text_encoder")
          for k, v in convert_state_dict_to_diffusers(get_peft_model_state_dict(getattr(pipe, c))).items()}
    weights = parse_lora(sd, default_alpha={"unet": 8.0, "text_encoder": 2.0})
    odd = next(k for k in weights.modules if k[1].endswith("attn2.to_v"))
    weights.modules[odd].alpha = 1.0
    kohya = save_lora_file(weights, tmp_path / "k.safetensors", "kohya")

    result = convert_file(kohya, tmp_path / "d.safetensors", to="diffusers")
    assert result.source_format == "kohya" and result.alphas == [1.0, 2.0, 8.0]
    loaded = load_pipeline(str(tiny_model_dir))
    loaded.load_lora_weights(str(result.path))
    np.testing.assert_allclose(_image(loaded), _image(_fused_reference(tiny_model_dir, weights)), atol=2e-4)

    back = read_lora_file(convert_file(result.path, tmp_path / "k2.safetensors", to="kohya").path)
    assert back.modules[odd].alpha == 1.0 and back.alphas() == {1.0, 2.0, 8.0}
