"""sdstudio: fine-tune Stable Diffusion with LoRA from a terminal."""

__version__ = "0.1.0"
