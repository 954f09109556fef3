"""Maskers: a model that turns (image, prompt) into a subject mask. `make_masker` picks one by
its spec: "demo" (the demo world's exact masker), or "clipseg:PATH|ID" (added by `dataset mask`).
"""

from __future__ import annotations

from typing import Any, Protocol

from sdstudio.core.errors import SdstudioError


class Masker(Protocol):
    name: str

    def mask(self, image: Any, prompt: str) -> Any:
        """A PIL "L" mask of the image's size: 255 where the prompt's subject is."""


def make_masker(spec: str, allow_download: bool = False, device: str | None = None,
                revision: str | None = None) -> Masker:
    """The masker a `--model` spec names; SdstudioError lists the choices for an unknown one."""
    if spec == "demo":
        from sdstudio.demo.masker import DemoMasker

        return DemoMasker()
    kind, _, source = spec.partition(":")
    if kind == "clipseg" and source.strip():
        from sdstudio.core.masks.clipseg import ClipSegMasker

        return ClipSegMasker(source.strip(), allow_download=allow_download, device=device, revision=revision)
    raise SdstudioError(f"unknown masker {spec!r}: use 'demo' or 'clipseg:PATH' (a local CLIPSeg folder or a model id)")
