"""Training SDXL LoRAs on the tiny SDXL model: text-to-image with buckets and both text encoders,
DreamBooth with prior preservation; what reaches the UNet is SDXL's conditioning."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_train_values
from sdstudio.core.runs.run_dir import RunDir
from test_buckets import mixed_aspect_folder


def _train(cfg_values: dict, spy_inputs: list | None = None, monkeypatch=None):
    """Train; with `spy_inputs`, record what each UNet pass of the step loss is given."""
    from sdstudio.core.config import build_config
    from sdstudio.core.training.loss import StepLoss
    from sdstudio.core.training.trainer import Trainer

    trainer = Trainer(build_config(cfg_values), None, None, None)
    if spy_inputs is not None:
        original = StepLoss._group_loss

        def spy(self, lat, eps, t, items, conds, weights):
            inputs = self.source.unet_inputs(items, conds)
            spy_inputs.append((tuple(lat.shape), list(items), list(conds), inputs))
            return original(self, lat, eps, t, items, conds, weights)

        monkeypatch.setattr(StepLoss, "_group_loss", spy)
    return trainer, trainer.run()


def test_sdxl_text_to_image_lora_with_buckets_trains_both_encoders_on_size_and_crop_ids(
        tiny_sdxl_dir, tmp_path, runs_root, one_torch_thread, monkeypatch):
    import torch
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import load_file

    folder = mixed_aspect_folder(tmp_path / "mixed")
    seen: list = []
    trainer, run = _train(tiny_train_values(tiny_sdxl_dir, tmp_path / "run", train_data_dir=str(folder), enable_bucket=True,
                                            bucket_reso_steps=8, train_batch_size=2, train_text_encoder=True,
                                            random_flip=True, max_train_steps=3, checkpointing_steps=3,
                                            validation_steps=100), seen, monkeypatch)
    assert RunDir(run.path).status()["state"] == "finished"
    assert type(trainer.models.source).__name__ == "SdxlSource"
    for shape, items, conds, inputs in seen:
        hidden = inputs["encoder_hidden_states"]
        assert tuple(hidden.shape) == (len(items), 77, 32 + 48)  # CLIP-L and bigG hidden states side by side
        assert tuple(inputs["added_cond_kwargs"]["text_embeds"].shape) == (len(items), 32)  # pooled bigG
        time_ids = inputs["added_cond_kwargs"]["time_ids"]
        for ex, ids in zip(items, time_ids.tolist()):
            w, h = ex.size
            bw, bh = ex.placement.bucket
            assert ids[0:2] == [h, w] and ids[4:6] == [bh, bw]  # original size, target size (the bucket)
            assert 0 <= ids[2] <= ex.placement.resized[1] - bh and 0 <= ids[3] <= ex.placement.resized[0] - bw
            assert (shape[2] * 2, shape[3] * 2) == (bh, bw)  # latents at the bucket's shape
    weights = load_file(str(RunDir(run.path).checkpoint(3).weights))
    heads = {k.split(".", 1)[0] for k in weights}
    assert heads == {"unet", "text_encoder", "text_encoder_2"}
    # the checkpoint loads with diffusers' SDXL pipeline and changes its picture
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)

    def picture():
        g = torch.Generator().manual_seed(0)
        return pipe("a red box wide", num_inference_steps=2, height=32, width=32, generator=g, output_type="pt").images

    before = picture()
    pipe.load_lora_weights(str(RunDir(run.path).checkpoint(3).path), weight_name="pytorch_lora_weights.safetensors")
    assert (picture() - before).abs().max() > 1e-3
    assert len(list((Path(run.path) / "samples").glob("*.png"))) >= 2


def test_sdxl_dreambooth_with_prior_preservation_generates_class_images_and_trains(
        tiny_sdxl_dir, instance_dir, tmp_path, runs_root, one_torch_thread):
    class_dir = tmp_path / "class"
    trainer, run = _train(tiny_train_values(
        tiny_sdxl_dir, tmp_path / "run", instance_data_dir=str(instance_dir), instance_prompt="a photo of sks box",
        with_prior_preservation=True, class_data_dir=str(class_dir), class_prompt="a photo of a box",
        num_class_images=2, sample_batch_size=2, max_train_steps=2, checkpointing_steps=2, validation_steps=100,
        enable_bucket=True, bucket_reso_steps=8))
    assert len(list(class_dir.glob("*.png"))) == 2
    source = trainer.models.source  # latents and both encoders' embeddings computed once, before the first step
    assert source.cache_latents and source.cache_text
    assert set(source._text_cache) == {"a photo of sks box", "a photo of a box"}
    assert [tuple(t.shape) for t in source._text_cache["a photo of a box"]] == [(77, 32 + 48), (32,)]
    assert len(source._latent_cache) == 4 + 2  # instance and class images, no flips
    status = RunDir(run.path).status()
    assert status["state"] == "finished" and status["step"] == 2
    assert [m["step"] for m in RunDir(run.path).metrics()] == [1, 2]


def test_sdxl_with_buckets_killed_and_resumed_ends_with_the_weights_of_an_uninterrupted_run(tiny_sdxl_dir, tmp_path):
    from test_resume import assert_same_weights_and_losses, kill_after_a_checkpoint_and_resume

    folder = mixed_aspect_folder(tmp_path / "mixed")
    straight, run, at_kill, out = kill_after_a_checkpoint_and_resume(
        tiny_sdxl_dir, tmp_path, 6, train_data_dir=str(folder), enable_bucket=True, bucket_reso_steps=8,
        train_batch_size=2, random_flip=True, max_train_steps=6, checkpointing_steps=2, validation_steps=100,
        lr_scheduler="cosine")
    assert f"at step {at_kill}" in out
    assert_same_weights_and_losses(straight, run, 6)


def test_mixed_precision_samples_decode_with_the_vae_in_fp32(tiny_sdxl_dir, tmp_path):
    """SDXL's VAE overflows in fp16: validation samples decode outside autocast, in fp32."""
    import torch

    from sdstudio.core.config import build_config
    from sdstudio.core.models import load_pipeline
    from sdstudio.core.runs.run_dir import RunDir as Run
    from sdstudio.core.training.validation import sample

    pipe = load_pipeline(str(tiny_sdxl_dir))
    seen = []
    decode = pipe.vae.decode

    def spy(latents, *args, **kwargs):
        seen.append((latents.dtype, torch.is_autocast_enabled("cpu")))
        return decode(latents, *args, **kwargs)

    pipe.vae.decode = spy
    cfg = build_config(tiny_train_values(tiny_sdxl_dir, tmp_path / "run", train_data_dir=str(tmp_path),
                                         num_validation_images=1, mixed_precision="bf16"))
    run = Run(tmp_path / "run")
    paths = sample(pipe, run, 0, cfg, ["a red box"], torch.device("cpu"), torch.bfloat16)
    assert len(paths) == 1 and paths[0].is_file()
    assert seen == [(torch.float32, False)]
