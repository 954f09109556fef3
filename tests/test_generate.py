"""Generation: a Generator that keeps its base loaded and swaps LoRAs, PNG parameters, grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdstudio.cli import main
from sdstudio.core.generation.generator import GenerateOptions, Generator, LoraSpec, parse_seeds
from sdstudio.core.lora.spec import parse_lora_spec
from sdstudio.core.runs.run_dir import RunDir


@pytest.fixture(scope="module")
def run_two_checkpoints(trained_run) -> RunDir:
    """The session's real training run `shapes`: checkpoints at steps 2 and 4 (different LoRA weights)."""
    return trained_run


def _arrays(items) -> list[np.ndarray]:
    return [np.asarray(i.image, dtype=np.int16) for i in items]


def test_generator_swaps_loras_and_scales_without_reloading_the_base(tiny_model_dir: Path, run_two_checkpoints):
    gen = Generator(str(tiny_model_dir), device="cpu")
    pipe, unet_weight = gen.pipe, gen.pipe.unet.conv_in.weight.clone()
    opts = GenerateOptions("a photo of sks dog", seeds=[1, 2], steps=2, guidance=5.0)
    progress: list[tuple[int, int]] = []
    base = _arrays(gen.generate(opts, on_step=lambda done, total: progress.append((done, total))))
    assert np.abs(base[0] - base[1]).max() > 0  # the seeds are different images
    assert progress == [(2, 4), (4, 4)]  # image-steps done of all, for a progress bar
    a, b = (LoraSpec(cp.weights, 1.0) for cp in run_two_checkpoints.checkpoints())

    gen.set_loras([a])
    with_a = _arrays(gen.generate(opts))
    gen.set_loras([b])
    with_b = _arrays(gen.generate(opts))
    gen.set_loras([LoraSpec(a.path, 0.0)])
    zero = _arrays(gen.generate(opts))
    gen.set_loras([])
    again = _arrays(gen.generate(opts))

    assert gen.pipe is pipe and len(gen._adapters) == 2  # each file loaded once, base never reloaded
    assert np.abs(with_a[0] - base[0]).max() > 8 and np.abs(with_a[0] - with_b[0]).max() > 8
    assert np.abs(zero[0] - base[0]).max() <= 1 and np.abs(again[1] - base[1]).max() <= 1
    assert bool((gen.pipe.unet.conv_in.weight == unet_weight).all())
    # a seed gives the same picture inside a batch as alone
    alone = _arrays(gen.generate(GenerateOptions("a photo of sks dog", seeds=[2], steps=2, guidance=5.0)))
    assert np.abs(alone[0] - base[1]).max() <= 2


def test_cli_grid_of_run_checkpoints_with_a1111_parameters(tiny_model_dir: Path, run_two_checkpoints, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, capsys):
    from PIL import Image

    monkeypatch.setenv("SDSTUDIO_DEMO_MODEL", str(tiny_model_dir))  # `--model demo` resolves here
    out = tmp_path / "out"
    rc = main(["generate", "--model", "demo", "--lora", f"{run_two_checkpoints.path}:0.8", "--prompt", "a red circle",
               "--negative-prompt", "blurry", "--seeds", "1-2", "--steps", "2", "--scheduler", "euler_a",
               "-o", str(out), "--grid"])
    assert rc == 0, capsys.readouterr().err
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["00-shapes-step-2-seed1.png", "00-shapes-step-2-seed2.png", "01-shapes-step-4-seed1.png",
                    "01-shapes-step-4-seed2.png", "grid.png"]
    params = Image.open(out / "01-shapes-step-4-seed2.png").text["parameters"]
    assert params.splitlines()[0] == "a red circle <lora:shapes-step4:0.8>"
    assert params.splitlines()[1] == "Negative prompt: blurry"
    assert "Steps: 2, Sampler: Euler a, CFG scale: 7.5, Seed: 2, Size: 32x32" in params
    assert 'Lora hashes: "shapes-step4: ' in params and "Model: sdstudio-demo" in params
    grid = Image.open(out / "grid.png")
    assert grid.width > 2 * 128 and grid.height > 2 * 128  # 2 columns x 2 rows of enlarged 32 px cells
    assert f"grid: {out / 'grid.png'}" in capsys.readouterr().out


def test_cli_compares_base_models(tiny_model_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "models"
    rc = main(["generate", "--model", str(tiny_model_dir), "--model", str(tiny_model_dir), "--prompt", "a cat",
               "--seeds", "3", "--steps", "1", "-o", str(out), "--grid"])
    assert rc == 0, capsys.readouterr().err
    assert len(list(out.glob("0*-tiny-sd-seed3.png"))) == 2 and (out / "grid.png").exists()


def test_argument_parsing_and_errors(tmp_path: Path, capsys):
    assert parse_seeds("1-4") == [1, 2, 3, 4] and parse_seeds("1,5, 9") == [1, 5, 9] and parse_seeds("2-3,7") == [2, 3, 7]
    assert parse_lora_spec("a/b.safetensors:0.6") == (Path("a/b.safetensors"), 0.6)
    assert parse_lora_spec("c:/x/y.safetensors") == (Path("c:/x/y.safetensors"), 1.0)
    assert main(["generate", "--prompt", "x", "--seeds", "4-1", "-o", str(tmp_path)]) == 2
    assert "ranges go upwards" in capsys.readouterr().err
    assert main(["generate", "--prompt", "x", "--lora", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path)]) == 2
    assert "no such file or run folder" in capsys.readouterr().err


def test_lora_for_another_architecture_is_refused_clearly(tiny_model_dir: Path, tmp_path: Path, capsys):
    from lora_helpers import write_legacy_attn_procs_lora

    legacy = write_legacy_attn_procs_lora(tmp_path / "pytorch_lora_weights.bin")  # SD 1.5 size, legacy layout
    rc = main(["generate", "--model", str(tiny_model_dir), "--lora", str(legacy), "--prompt", "x", "--seeds", "1",
               "--steps", "1", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "made for another model than tiny-sd (128 of 128 modules do not fit" in err
