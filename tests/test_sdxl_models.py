"""SDXL base models: recognised as a diffusers folder and as an SGM single file, which loads."""

from __future__ import annotations


COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def _components(folder):
    from safetensors.torch import load_file

    return {c: load_file(str(folder / c / f"{'model' if c.startswith('text') else 'diffusion_pytorch_model'}.safetensors"))
            for c in COMPONENTS}


def _sgm_single_file(folder, path):
    """The diffusers folder as one SGM-layout .safetensors (as A1111 and ComfyUI keep SDXL)."""
    from safetensors.torch import save_file

    from sdstudio.core.io.layouts import layout_of_folder
    from sdstudio.demo.ldm_files import diffusers_to_ldm

    sd = diffusers_to_ldm(_components(folder), layout_of_folder(folder))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def test_an_sdxl_folder_and_its_sgm_single_file_are_recognised_and_the_file_loads(tiny_sdxl_dir, tmp_path):
    import torch

    from sdstudio.core.models import load_pipeline, resolve_base_model

    assert resolve_base_model(str(tiny_sdxl_dir)).family == "sdxl"
    comps = _components(tiny_sdxl_dir)
    path = _sgm_single_file(tiny_sdxl_dir, tmp_path / "tiny-xl.safetensors")
    base = resolve_base_model(str(path))
    assert (base.kind, base.family) == ("single_file", "sdxl")
    pipe = load_pipeline(base, config=str(tiny_sdxl_dir))
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    for comp in ("unet", "text_encoder_2"):
        got = getattr(pipe, comp).state_dict()
        for key, want in comps[comp].items():
            assert torch.equal(got[key].float(), want.float()), f"{comp}.{key}"


def test_sdxl_loads_in_the_training_dtype_with_the_vae_in_fp32_bit_identical_to_a_cast(tiny_sdxl_dir, tmp_path):
    """mixed_precision = bf16: each component is loaded in its final dtype (the VAE fp32), never as a
    whole fp32 model first; the weights are those a cast of the fp32 load gives, bit for bit."""
    import torch

    from sdstudio.core.models import load_pipeline

    comps = _components(tiny_sdxl_dir)
    single = _sgm_single_file(tiny_sdxl_dir, tmp_path / "tiny-xl.safetensors")
    for model, kwargs in ((str(tiny_sdxl_dir), {}), (str(single), {"config": str(tiny_sdxl_dir)})):
        pipe = load_pipeline(model, torch_dtype=torch.bfloat16, vae_dtype=torch.float32, **kwargs)
        for comp in COMPONENTS:
            want_dtype = torch.float32 if comp == "vae" else torch.bfloat16
            got = getattr(pipe, comp).state_dict()
            assert {t.dtype for t in got.values() if t.is_floating_point()} == {want_dtype}, (model, comp)
            for key, want in comps[comp].items():
                assert torch.equal(got[key], want.to(want_dtype)), f"{model}: {comp}.{key}"


def test_another_vae_replaces_the_models_own_as_the_diffusers_flag_does(tiny_sdxl_dir, tiny_model_dir, tmp_path):
    import pytest

    from sdstudio.core.errors import ModelError
    from sdstudio.core.models import load_pipeline

    assert load_pipeline(str(tiny_sdxl_dir)).vae.config.scaling_factor == 0.13025
    pipe = load_pipeline(str(tiny_sdxl_dir), vae=str(tiny_model_dir / "vae"))
    assert pipe.vae.config.scaling_factor == 0.18215  # the other VAE's
    with pytest.raises(ModelError, match="cannot load this VAE"):
        load_pipeline(str(tiny_sdxl_dir), vae=str(tmp_path))


def test_a_hub_id_in_the_local_cache_is_recognised_as_sdxl_and_a_refiner_refused(tiny_sdxl_dir, tmp_path, monkeypatch):
    import json
    import shutil

    import pytest

    from sdstudio.core.errors import ModelError
    from sdstudio.core.models import resolve_base_model

    def cache(repo: str, model_index: dict) -> None:
        entry = tmp_path / f"models--{repo.replace('/', '--')}"
        snap = entry / "snapshots" / "0123abcd"
        (snap / "unet").mkdir(parents=True)
        (entry / "refs").mkdir()
        (entry / "refs" / "main").write_text("0123abcd")
        (snap / "model_index.json").write_text(json.dumps(model_index))
        shutil.copy(tiny_sdxl_dir / "unet" / "config.json", snap / "unet" / "config.json")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache("someone/tiny-xl", json.loads((tiny_sdxl_dir / "model_index.json").read_text()))
    cache("someone/tiny-refiner", {"_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None]})
    assert resolve_base_model("someone/tiny-xl").family == "sdxl"
    with pytest.raises(ModelError, match="SDXL refiner"):
        resolve_base_model("someone/tiny-refiner")
    assert resolve_base_model("someone/not-cached").family == "sd1"  # offline: loading says what is wrong
