"""A full fine-tune's checkpoint as one LDM/SGM-named state dict, read on demand.

The merge's `ModelSource` of the run's base model (a diffusers folder, the demo or an A1111 single
file) with the tensors of the components the checkpoint holds read from the checkpoint's
`save_pretrained` folders instead, renamed through the base's layout (`io.ldm_layout`,
`io.sgm_layout`). Export writes it out; Merge takes it as any input. Nothing is loaded whole.
"""

from __future__ import annotations

import os

from sdstudio.core.errors import ModelError
from sdstudio.core.full.checkpoint_model import FullCheckpoint, find_full_checkpoint


def open_full_checkpoint(checkpoint: FullCheckpoint | str | os.PathLike[str], ema: bool | None = None):  # -> ModelSource
    """The checkpoint's model (EMA weights when it has them, unless `ema` says otherwise) with the
    base's untrained components; ModelError when a trained tensor does not fit the base."""
    from sdstudio.core.merge.sources import component_pieces, open_model

    full = checkpoint if isinstance(checkpoint, FullCheckpoint) else find_full_checkpoint(checkpoint, ema)
    if full is None:
        raise ModelError(f"{checkpoint}: not a full fine-tune checkpoint (expected RUN/checkpoints/step-N/model/unet/)")
    base = open_model(full.base_spec())
    try:
        layout = base.layout
        if "text_encoder_2" in full.components and layout.family != "sdxl":
            raise ModelError(f"{full.weights_dir}: has a text_encoder_2 but the run's base is not an SDXL model")
        pieces = component_pieces(layout, full.components)
        for key, parts in pieces.items():
            info = parts[0].reader.tensors[parts[0].key]
            if key in base.shapes and parts[0].op == "copy" and tuple(info.shape) != base.shapes[key]:
                raise ModelError(f"{full.weights_dir}: {parts[0].key} has shape {list(info.shape)}, the base model "
                                 f"{base.name} has {list(base.shapes[key])}: this checkpoint was trained on another model")
        missing = [key for key in base.keys() if key not in pieces
                   and (parts := layout.from_ldm(key)) and parts[0].component in full.components]
        if missing:
            raise ModelError(f"{full.weights_dir}: {len(missing)} weights of the base model are missing from this "
                             f"checkpoint (e.g. {missing[0]}): this checkpoint was trained on another model")
        unet_files = sorted((full.weights_dir / "unet").glob("*.safetensors"))
        return base.with_pieces(pieces, name=full.name, path=full.path, kind="full_checkpoint",
                                hash_file=unet_files[0] if unet_files else None)
    except BaseException:
        base.close()
        raise
