"""File names and suffixes every part of sdstudio agrees on (one table of each)."""

from __future__ import annotations

# Pictures a dataset, a class folder or a run may hold.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Pickle containers: read only with torch.load(weights_only=True).
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
# A base model or merge input as one file (A1111 layout).
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
# The components of a diffusers pipeline that hold weights, in the order sdstudio walks them.
COMPONENTS = ("unet", "text_encoder", "vae")
# Weight file stem of each component in a diffusers folder (`<stem>.safetensors`, `.bin`, shards).
WEIGHT_NAMES = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model",
                "text_encoder_2": "model"}
