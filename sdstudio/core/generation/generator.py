"""Sampling with a base model and LoRAs, keeping the pipeline loaded between calls.

`Generator` loads the base once; `set_loras` loads each LoRA file once as a named adapter and
then only changes which adapters are active and at what scale, so the studio can flip
between checkpoints or move a strength slider without reloading anything. All seeds of one
prompt go through the pipeline as one batch (halved on out-of-memory). Each image carries an
A1111-style `parameters` text, so it can be read back by A1111, ComfyUI and image viewers.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sdstudio import __version__
from sdstudio.core.errors import SdstudioError
from sdstudio.core.io.hashing import safetensors_short_hash
from sdstudio.core.models import BaseModel, load_pipeline, model_identity, resolve_base_model

# sdstudio name -> (diffusers scheduler class, extra config, A1111 sampler name)
SCHEDULERS: dict[str, tuple[str, dict[str, Any], str]] = {
    "ddim": ("DDIMScheduler", {}, "DDIM"),
    "pndm": ("PNDMScheduler", {}, "PLMS"),
    "euler": ("EulerDiscreteScheduler", {}, "Euler"),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}, "Euler a"),
    "heun": ("HeunDiscreteScheduler", {}, "Heun"),
    "lms": ("LMSDiscreteScheduler", {}, "LMS"),
    "dpm++2m": ("DPMSolverMultistepScheduler", {}, "DPM++ 2M"),
    "dpm++2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "DPM++ 2M Karras"),
    "unipc": ("UniPCMultistepScheduler", {}, "UniPC"),
}


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA file and its strength (A1111's `<lora:name:scale>`)."""

    path: Path
    scale: float = 1.0
    label: str = ""  # shown in grids
    prompt_name: str = ""  # the name in `<lora:name:scale>` (a checkpoint: its export's file name)

    @property
    def name(self) -> str:
        return self.label or self.path.stem

    @property
    def file_name(self) -> str:
        return self.prompt_name or self.path.stem


@dataclass
class GenerateOptions:
    prompt: str
    negative_prompt: str = ""
    seeds: list[int] = field(default_factory=lambda: [1])
    steps: int = 30
    guidance: float = 7.5
    scheduler: str | None = None  # None: the model's own
    width: int | None = None  # None: the model's native size
    height: int | None = None


@dataclass(frozen=True)
class GeneratedImage:
    seed: int
    image: Any  # PIL.Image
    parameters: str


def parse_seeds(text: str) -> list[int]:
    """`1-4`, `1,5,9`, `1-3,10` or `7` -> a list of seeds."""
    seeds: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise SdstudioError(f"--seeds {text!r}: expected seeds like 7, 1-4 or 1,5,9 (ranges go upwards)")
        seeds.extend(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return seeds


def a1111_parameters(opts: GenerateOptions, seed: int, width: int, height: int, model: dict[str, str],
                     loras: list[LoraSpec], sampler: str) -> str:
    """The `parameters` text A1111 writes into its PNGs (LoRAs as `<lora:name:scale>` in the prompt)."""
    prompt = opts.prompt + "".join(f" <lora:{l.file_name}:{l.scale:g}>" for l in loras)
    lines = [prompt]
    if opts.negative_prompt:
        lines.append(f"Negative prompt: {opts.negative_prompt}")
    fields = [f"Steps: {opts.steps}", f"Sampler: {sampler}", f"CFG scale: {opts.guidance:g}", f"Seed: {seed}",
              f"Size: {width}x{height}"]
    if model.get("short_hash"):
        fields.append(f"Model hash: {model['short_hash']}")
    fields.append(f"Model: {model['name']}")
    hashes = [f"{l.file_name}: {h}" for l in loras if (h := safetensors_short_hash(l.path))]
    if hashes:
        fields.append(f'Lora hashes: "{", ".join(hashes)}"')
    fields.append(f"Version: sdstudio {__version__}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower()


class Generator:
    """A loaded base model plus the LoRA adapters loaded into it so far."""

    def __init__(self, model: str | BaseModel, device: str | None = None, torch_dtype: Any = None,
                 vae: str | None = None) -> None:
        """`vae`: another VAE than the model's (a run's pretrained_vae_model_name_or_path)."""
        import torch

        self.base = model if isinstance(model, BaseModel) else resolve_base_model(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch_dtype or (torch.float16 if self.device.startswith("cuda") else torch.float32)
        self.pipe = load_pipeline(self.base, torch_dtype=dtype, vae=vae).to(self.device)
        self.identity = model_identity(self.base)
        self._default_scheduler = self.pipe.scheduler
        self._adapters: dict[tuple[str, float], str] = {}  # (resolved path, mtime) -> adapter name
        self.loras: list[LoraSpec] = []
        self.max_batch: int | None = None  # learnt on out-of-memory

    # LoRAs -------------------------------------------------------------------------------
    def _adapter_for(self, spec: LoraSpec) -> str:
        path = spec.path.resolve()
        if not path.is_file():
            raise SdstudioError(f"{spec.path}: LoRA file not found")
        key = (str(path), path.stat().st_mtime)
        if key not in self._adapters:
            from sdstudio.core.lora.formats import read_lora_file, to_kohya

            weights = read_lora_file(path)  # pickles: only through weights_only loading
            self._check_fits(spec.path, weights)
            name = f"lora{len(self._adapters)}"
            source: Any = str(path) if path.suffix == ".safetensors" else to_kohya(weights)
            try:
                with warnings.catch_warnings():  # a second adapter is the point, not a mistake
                    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                    self.pipe.load_lora_weights(source, adapter_name=name)
            except (ValueError, KeyError, RuntimeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SdstudioError(f"{spec.path}: diffusers cannot apply this LoRA ({first})") from None
            self._adapters[key] = name
        return self._adapters[key]

    def _check_fits(self, where: Path, weights: Any) -> None:
        """Refuse a LoRA made for another architecture before diffusers half-loads it."""
        bad = []
        for (component, path), module in weights.modules.items():
            model = getattr(self.pipe, component)
            if not hasattr(model, "text_model"):
                path = path.removeprefix("text_model.")
            try:
                shape = tuple(model.get_submodule(path).weight.shape)
            except AttributeError:
                bad.append(f"{component}.{path} does not exist")
                continue
            if shape[:2] != (module.up.shape[0], module.down.shape[1]):
                bad.append(f"{component}.{path} is {shape[0]}x{shape[1]}, the LoRA's "
                           f"{module.up.shape[0]}x{module.down.shape[1]}")
        if bad:
            raise SdstudioError(f"{where}: this LoRA was made for another model than {self.base.name} "
                                f"({len(bad)} of {len(weights.modules)} modules do not fit, e.g. {bad[0]})")

    def set_loras(self, loras: list[LoraSpec]) -> None:
        """Make exactly `loras` active at their scales; files already loaded are not read again."""
        names = [self._adapter_for(spec) for spec in loras]
        if names:
            self.pipe.enable_lora()
            self.pipe.set_adapters(names, adapter_weights=[spec.scale for spec in loras])
        elif self._adapters:
            self.pipe.disable_lora()
        self.loras = list(loras)

    def forget_loras(self) -> None:
        """Unload every adapter (frees their memory); the base weights are untouched."""
        if self._adapters:
            self.pipe.delete_adapters(list(self._adapters.values()))
        self._adapters.clear()
        self.loras = []

    # sampling ----------------------------------------------------------------------------
    def _use_scheduler(self, name: str | None) -> str:
        if name is None or name == "default":
            self.pipe.scheduler = self._default_scheduler
            return type(self._default_scheduler).__name__.removesuffix("Scheduler")
        if name not in SCHEDULERS:
            raise SdstudioError(f"--scheduler {name!r}: expected one of {', '.join(SCHEDULERS)}")
        import diffusers

        cls_name, extra, sampler = SCHEDULERS[name]
        cls = getattr(diffusers, cls_name)
        self.pipe.scheduler = cls.from_config(self._default_scheduler.config, **extra)
        return sampler

    def native_size(self) -> int:
        return int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)

    def generate(self, opts: GenerateOptions, on_step: Callable[[int, int], None] | None = None) -> list[GeneratedImage]:
        """One image per seed; the seeds run as one batch (smaller batches after an out-of-memory).

        `on_step(done, total)` reports denoising steps (all batches together) for a progress bar."""
        sampler = self._use_scheduler(opts.scheduler)
        width = opts.width or self.native_size()
        height = opts.height or self.native_size()
        if width % 8 or height % 8:
            raise SdstudioError(f"--width/--height {width}x{height}: both must be multiples of 8")
        images: list[Any] = []
        seeds = list(opts.seeds)
        while len(images) < len(seeds):
            batch = seeds[len(images):len(images) + (self.max_batch or len(seeds))]
            try:
                images.extend(self._run(opts, batch, width, height, on_step, len(images)))
            except RuntimeError as exc:
                if not _is_oom(exc) or len(batch) == 1:
                    raise
                self.max_batch = max(1, len(batch) // 2)
                self._free()
        return [GeneratedImage(s, im, a1111_parameters(opts, s, width, height, self.identity, self.loras, sampler))
                for s, im in zip(seeds, images)]

    def _run(self, opts: GenerateOptions, seeds: list[int], width: int, height: int,
             on_step: Callable[[int, int], None] | None = None, done_images: int = 0) -> list[Any]:
        import torch

        total_images = len(opts.seeds)

        def step_end(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if on_step is not None:  # images finished so far count as all their steps
                done = done_images * opts.steps + len(seeds) * (step + 1)
                on_step(done, total_images * opts.steps)
            return kwargs

        gens = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        with torch.inference_mode():
            out = self.pipe(prompt=opts.prompt, negative_prompt=opts.negative_prompt or None,
                            num_images_per_prompt=len(seeds), num_inference_steps=opts.steps,
                            guidance_scale=opts.guidance, width=width, height=height, generator=gens,
                            callback_on_step_end=step_end)
        return list(out.images)

    def _free(self) -> None:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the pipeline (e.g. before loading another base model)."""
        self.pipe = None
        self._adapters.clear()
        self._free()


def save_png(item: GeneratedImage, path: str | os.PathLike[str]) -> Path:
    """Write a PNG carrying its `parameters` text chunk (atomically)."""
    from PIL.PngImagePlugin import PngInfo

    from sdstudio.core.io.atomic import save_image

    info = PngInfo()
    info.add_text("parameters", item.parameters)
    save_image(item.image, path, pnginfo=info)
    return Path(path)
