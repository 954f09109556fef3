"""torch_compile = true: the saved LoRA has the plain keys (no `_orig_mod.`), its export loads in
diffusers, and a run resumes with compile switched on -> off and off -> on. The cheap `eager`
backend (SDSTUDIO_COMPILE_BACKEND) gives the same torch.compile wrapper as inductor without
compiling kernels."""

from __future__ import annotations

import torch
from safetensors import safe_open

from conftest import tiny_train_values
from sdstudio.core.config import build_config
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training.trainer import train


def keys_of(path) -> list[str]:
    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def test_compiled_run_saves_plain_keys_exports_and_resumes_across_the_switch(tiny_model_dir, instance_dir, tmp_path,
                                                                             monkeypatch):
    from sdstudio.core.lora.export import export_checkpoint
    from sdstudio.core.models import load_pipeline

    monkeypatch.setenv("SDSTUDIO_COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    common = dict(instance_data_dir=str(instance_dir), instance_prompt="sks", checkpointing_steps=2, validation_steps=100,
                  num_validation_images=1, train_text_encoder=True)
    for first, second in ((True, False), (False, True)):
        out = tmp_path / f"run-{first}-{second}"
        run = train(build_config(tiny_train_values(tiny_model_dir, out, torch_compile=first, max_train_steps=2, **common)))
        resumed = train(build_config(tiny_train_values(tiny_model_dir, out, torch_compile=second, max_train_steps=4,
                                                       **common)), resume=out)
        assert resumed.status()["state"] == "finished" and [c.step for c in resumed.checkpoints()] == [2, 4]
        for ckpt in RunDir(out).checkpoints():
            keys = keys_of(ckpt.weights) + keys_of(ckpt.state_dir / "lora_peft.safetensors")
            assert keys and not [k for k in keys if "_orig_mod" in k], ckpt.path
        assert [m["step"] for m in run.metrics()] == [1, 2, 3, 4]

    export = export_checkpoint(tmp_path / "run-True-False", step=2)  # written by the compiled run
    assert not [k for k in keys_of(export) if "orig_mod" in k]
    pipe = load_pipeline(str(tiny_model_dir))
    pipe.load_lora_weights(str(export))
    assert pipe.get_list_adapters()  # diffusers matched the kohya keys to modules
