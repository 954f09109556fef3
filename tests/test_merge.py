"""Streaming merges: A1111 semantics across input formats, LoRA fusing, bad inputs, kills and full disks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from merge_helpers import (POS, a_file, b_file, diffusers_reads, folder_state, ldm_state,  # noqa: F401
                           lora_modules, model_b_dir, write_kohya_lora, write_peft_lora, write_single_file)
from sdstudio.core.errors import ModelError
from sdstudio.core.merge.merger import merge_files

CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


def _load(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()


def _merged_keys(sd: dict) -> list[str]:
    return [k for k in sd if "model" in k and not k.endswith("position_ids") and sd[k].is_floating_point()]


def test_weighted_sum_of_single_file_and_folder_follows_a1111(a_file: Path, model_b_dir: Path, b_file: Path,
                                                              tiny_model_dir: Path, tmp_path: Path) -> None:
    """(1 - M)·A + M·B for every weight, as diffusers' own single-file loader reads the merged file,
    against A and B as diffusers loads their folders (A's file was written from tiny_model_dir)."""
    import torch

    from sdstudio.core.io.hashing import file_sha256

    out = merge_files(a_file, tmp_path / "m.safetensors", b_file, multiplier=0.3, dtype="fp32")
    got, meta = _load(out)
    a_ldm = _load(a_file)[0]
    assert set(got) == set(a_ldm)  # A's keys, A-only ones included
    merged, a, b = diffusers_reads(out, tiny_model_dir), diffusers_reads(tiny_model_dir), diffusers_reads(model_b_dir)
    assert set(merged) == set(a) and len(a) > 100
    for key in a:
        torch.testing.assert_close(merged[key], 0.7 * a[key] + 0.3 * b[key], rtol=0, atol=1e-6, msg=key)
    assert torch.equal(got[POS], a_ldm[POS]) and torch.equal(got["alphas_cumprod"], a_ldm["alphas_cumprod"])
    assert got["model_ema.num_updates"].item() == 7
    recipe = json.loads(meta["sd_merge_recipe"])
    assert recipe["method"] == "weighted-sum" and recipe["multiplier"] == 0.3
    assert recipe["primary_model"] == {"name": "a", "sha256": file_sha256(a_file)}
    assert recipe["secondary_model"]["sha256"] == file_sha256(b_file)
    # a diffusers folder as B gives the same merge
    out2 = merge_files(a_file, tmp_path / "m2.safetensors", model_b_dir, multiplier=0.3, dtype="fp32")
    got2 = _load(out2)[0]
    assert all(torch.equal(got2[k], got[k]) for k in _merged_keys(a_ldm))


def test_add_difference_with_ckpt_writes_bf16(a_file: Path, model_b_dir: Path, tiny_model_dir: Path,
                                              tmp_path: Path) -> None:
    """A + M·(B - C) in bf16, as diffusers reads the merged file; C (a .ckpt) holds half of B's weights."""
    import torch

    c_sd = {k: v * 0.5 if v.is_floating_point() else v for k, v in ldm_state(model_b_dir).items()}
    c_path = tmp_path / "c.ckpt"
    torch.save({"state_dict": c_sd}, c_path)
    out = merge_files(a_file, tmp_path / "ad.safetensors", model_b_dir, c_path, method="add-difference",
                      multiplier=0.8, dtype="bf16")
    got, meta = _load(out)
    assert all(got[k].dtype == torch.bfloat16 for k in _merged_keys(_load(a_file)[0]))
    merged, a, b = diffusers_reads(out, tiny_model_dir), diffusers_reads(tiny_model_dir), diffusers_reads(model_b_dir)
    assert set(merged) == set(a)
    for key in a:
        want = a[key] + 0.8 * (b[key] - 0.5 * b[key])  # computed in fp32, then rounded to bf16
        torch.testing.assert_close(merged[key], want, rtol=2 ** -8, atol=1e-7, msg=key)
    assert json.loads(meta["sd_merge_recipe"])["tertiary_model"]["name"] == "c"


def test_inpainting_a_merges_its_first_four_channels(tiny_model_dir: Path, b_file: Path, tmp_path: Path) -> None:
    import torch

    def nine_channels(sd: dict) -> None:
        w = sd[CONV_IN]
        sd[CONV_IN] = torch.cat([w, torch.randn(w.shape[0], 5, *w.shape[2:])], dim=1)

    inpaint = write_single_file(tiny_model_dir, tmp_path / "inpaint.safetensors", nine_channels)
    got = _load(merge_files(inpaint, tmp_path / "m.safetensors", b_file, multiplier=0.5, dtype="fp32"))[0]
    a, b = _load(inpaint)[0][CONV_IN], _load(b_file)[0][CONV_IN]
    assert got[CONV_IN].shape[1] == 9
    torch.testing.assert_close(got[CONV_IN][:, :4], 0.5 * a[:, :4] + 0.5 * b, rtol=0, atol=1e-6)
    assert torch.equal(got[CONV_IN][:, 4:], a[:, 4:])
    with pytest.raises(ModelError, match="inpainting model must be A"):
        merge_files(b_file, tmp_path / "no.safetensors", inpaint)


def test_models_of_another_family_are_refused_naming_the_first_key(a_file: Path, tmp_path: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sdstudio.core.io.atomic import save_safetensors
    from sdstudio.core.io.ldm_layout import LdmLayout
    from sdstudio.demo.ldm_files import diffusers_to_ldm
    from sdstudio.demo.tiny import tiny_unet_config, tiny_vae_config

    torch.manual_seed(0)  # an SD 2-layout model: OpenCLIP text keys, 64-wide cross attention
    unet_cfg, vae_cfg = tiny_unet_config(16, 64), tiny_vae_config(32)
    comps = {"unet": UNet2DConditionModel(**unet_cfg).state_dict(), "vae": AutoencoderKL(**vae_cfg).state_dict(),
             "text_encoder": CLIPTextModel(CLIPTextConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                                          num_attention_heads=4, vocab_size=300)).state_dict()}
    sd2 = tmp_path / "sd2.safetensors"
    save_safetensors(diffusers_to_ldm(comps, LdmLayout(unet_cfg, vae_cfg, "sd2", 2)), sd2)
    with pytest.raises(ModelError) as err:
        merge_files(a_file, tmp_path / "x.safetensors", sd2)
    msg = str(err.value)
    assert "A: sd1, B: sd2" in msg
    # keys are compared in A's (sorted) order: the text encoder's first tensor is the first to differ
    assert ("first mismatched key cond_stage_model.transformer.text_model.embeddings.position_embedding.weight: "
            "A has shape [77, 32], B missing") in msg
    assert not (tmp_path / "x.safetensors").exists()


def test_truncated_or_corrupt_files_are_refused(a_file: Path, b_file: Path, tmp_path: Path) -> None:
    data = b_file.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-1000])
    with pytest.raises(ModelError, match="truncated"):
        merge_files(a_file, tmp_path / "x.safetensors", truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(data[:8] + b"{not json" + data[17:])
    with pytest.raises(ModelError, match="corrupt"):
        merge_files(a_file, tmp_path / "x.safetensors", garbage)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.safetensors", "truncated.safetensors"]


_SLOW_MERGE = """
import sys, time
from pathlib import Path
from sdstudio.core.merge.merger import merge_files
def progress(done, total):
    Path(sys.argv[4]).touch()
    time.sleep(0.2)
merge_files(sys.argv[1], sys.argv[3], sys.argv[2], multiplier=0.5, progress=progress)
"""


def test_a_killed_merge_leaves_no_output(a_file: Path, b_file: Path, tmp_path: Path) -> None:
    out, started = tmp_path / "out" / "merged.safetensors", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_MERGE, str(a_file), str(b_file), str(out), str(started)])
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the merge never started writing"
        partial = list(out.parent.glob(".merged.safetensors.*.tmp"))
        assert partial and partial[0].stat().st_size > 0  # it was mid-write
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()


_SMALL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from sdstudio.core.errors import ModelError
from sdstudio.core.merge.merger import merge_files
try:
    merge_files(sys.argv[1], sys.argv[3], sys.argv[2], multiplier=0.5, dtype="fp32")
except ModelError as exc:
    print(exc)
    sys.exit(3)
"""


def test_a_full_disk_leaves_nothing_behind(a_file: Path, b_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "merged.safetensors"
    res = subprocess.run([sys.executable, "-c", _SMALL_DISK, str(a_file), str(b_file), str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stderr[-2000:]
    assert "writing failed" in res.stdout and "no output was left behind" in res.stdout
    assert list(out.parent.iterdir()) == []


def test_lora_fuse_reads_kohya_and_peft_files_alike(a_file: Path, tmp_path: Path) -> None:
    import torch

    from sdstudio.core.io.layouts import layout_of_shapes

    mods = lora_modules(seed=3, rank=2)
    kohya = write_kohya_lora(tmp_path / "k.safetensors", mods, alpha=1.0)
    peft = write_peft_lora(tmp_path / "p.safetensors", mods, alpha=1.0)
    out_k = merge_files(a_file, tmp_path / "fk.safetensors", loras=[(str(kohya), 0.7)], dtype="fp32")
    out_p = merge_files(a_file, tmp_path / "fp.safetensors", loras=[(str(peft), 0.7)], dtype="fp32")
    got_k, got_p, a = _load(out_k)[0], _load(out_p)[0], _load(a_file)[0]
    layout = layout_of_shapes({k: tuple(v.shape) for k, v in a.items()})
    changed = set()
    for (comp, path), (down, up) in mods.items():
        key, _ = layout.to_ldm(comp, f"{path}.weight")
        torch.testing.assert_close(got_k[key], a[key] + 0.7 * (1.0 / 2) * (up @ down), rtol=0, atol=1e-6)
        changed.add(key)
    assert all(torch.equal(got_k[k], got_p[k]) for k in got_k)
    assert all(torch.equal(got_k[k], a[k]) for k in a if k not in changed)


def test_diffusers_output_loads_and_matches_the_single_file(a_file: Path, model_b_dir: Path, tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    import torch

    from sdstudio.cli import main

    single = tmp_path / "m.safetensors"
    folder = tmp_path / "m-diffusers"
    common = [str(a_file), str(model_b_dir), "--multiplier", "0.4", "--dtype", "fp32"]
    assert main(["merge", *common, "-o", str(single)]) == 0
    assert main(["merge", *common, "-o", str(folder), "--format", "diffusers", "--config", str(tiny_model_dir)]) == 0
    from sdstudio.core.io.layouts import layout_of_folder
    from sdstudio.demo.ldm_files import diffusers_to_ldm

    from_folder = diffusers_to_ldm(folder_state(folder), layout_of_folder(folder))
    got = _load(single)[0]
    assert all(torch.equal(from_folder[k], got[k]) for k in from_folder)
    from sdstudio.core.models import load_pipeline

    pipe = load_pipeline(str(folder))  # transformers/diffusers read the folder back
    assert torch.equal(pipe.unet.conv_in.weight, got[CONV_IN])


def test_cli_refuses_bad_requests(a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sdstudio.cli import main

    assert main(["merge", str(a_file), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "nothing to merge" in capsys.readouterr().err
    assert main(["merge", str(a_file), str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["merge", str(a_file), str(a_file), "-o", str(a_file)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_vae_is_baked_in_from_a_diffusers_vae_folder(a_file: Path, model_b_dir: Path, tmp_path: Path) -> None:
    import torch

    out = merge_files(a_file, tmp_path / "v.safetensors", a_file, multiplier=0.5, vae=model_b_dir / "vae",
                      dtype="fp32")
    got, meta = _load(out)
    a, b = _load(a_file)[0], ldm_state(model_b_dir)
    vae_keys = [k for k in a if k.startswith("first_stage_model.")]
    assert vae_keys and all(torch.equal(got[k], b[k]) for k in vae_keys)
    assert all(torch.equal(got[k], a[k]) for k in a if k not in vae_keys)
    assert json.loads(meta["sd_merge_recipe"])["vae"]["name"] == "vae"


def test_multiplier_flag_and_its_old_name(a_file: Path, model_b_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`-m` is A1111's multiplier; `--alpha` still works and says it was renamed."""
    import json

    from safetensors import safe_open

    from sdstudio.cli import main

    for flag, value, out in (("-m", "0.25", "short.safetensors"), ("--alpha", "0.75", "old.safetensors")):
        assert main(["merge", str(a_file), str(model_b_dir), flag, value, "-o", str(tmp_path / out)]) == 0
        with safe_open(str(tmp_path / out), framework="pt") as fh:
            assert json.loads(fh.metadata()["sd_merge_recipe"])["multiplier"] == float(value)
        err = capsys.readouterr().err
        assert ("--alpha is now --multiplier" in err) == (flag == "--alpha")
