"""Which single-file layout a model has: SD 1.x/2.x (`LdmLayout`) or SDXL (`SgmLayout`).

The choice lives here, above both layouts, so that `sgm_layout` builds on `ldm_layout` and
nothing points back.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sdstudio.core.io.ldm_layout import LdmLayout
from sdstudio.core.io.sgm_layout import SgmLayout, is_sgm_shapes


def layout_of_folder(folder: str | Path) -> LdmLayout:
    """The layout of a diffusers folder, read from its component configs (SDXL: a text_encoder_2/)."""
    root = Path(folder)
    if (root / "text_encoder_2" / "config.json").is_file():
        return SgmLayout.from_folder(root)
    return LdmLayout.from_folder(root)


def layout_of_shapes(shapes: Mapping[str, tuple[int, ...]]) -> LdmLayout:
    """The layout of a single file, inferred from its tensor names and shapes alone."""
    if is_sgm_shapes(shapes):
        return SgmLayout.from_ldm_shapes(shapes)
    return LdmLayout.from_ldm_shapes(shapes)
