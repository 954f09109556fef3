"""The Dataset screen's masks and crops: the mask overlay, each image's coverage and crop in the
list and the info line, the keyboard crop editor, and "Mask all" / "Crop all to subject".

A mixin of DatasetScreen (which keeps files, preview and captions), so each file stays small.
Mask sources, coverage, crop boxes and their geometry are `sdstudio.core.masks`; this module
only reads them for display and hands accepted boxes to `crops.write_crops`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdstudio.core.masks.crop_edit import bucket_aspect, describe
from sdstudio.core.masks.crops import clip_box
from sdstudio.core.masks.crops import Box
from sdstudio.tui.widgets.crop_editor import CropEditor


def scan_crops(folder: Path) -> tuple[dict[str, Box], list[str]]:
    """The folder's crop boxes and a line per malformed one; run in the scan worker."""
    from sdstudio.core.masks.crops import crops_file, read_crops

    boxes, bad = read_crops(folder)
    return boxes, [f"{crops_file(folder).name} line {n}: {why}" for n, why in bad]


def figures(coverage: float | None, box: Box | None) -> str:
    """What the list shows before a file's name: mask coverage, ⊡ when it has a crop box."""
    return (f"{coverage:.0%} " if coverage is not None else "") + ("⊡ " if box else "")


class DatasetMasks:
    """Mixed into DatasetScreen; expects its `folder`, `selected`, `shown`, `report`, `resolution`,
    `bucketed`, `_refresh_crop` and `action_rescan`."""

    crops: dict[str, Box]
    coverages: dict[str, float | None]
    overlay: bool = False
    folder: Path | None
    selected: Any
    shown: list[Any]
    report: Any

    _decoded: tuple[Any, Any] = (None, None)  # ((path, mtime), image): the picture being edited

    def decoded(self, path: Path) -> Any:
        """The image decoded (load_rgb), the last one kept: each crop-editor key re-renders the
        preview, and decoding a large photo per key would make the box lag behind the keys."""
        from sdstudio.core.dataset import load_rgb

        key = (path, path.stat().st_mtime_ns)
        if self._decoded[0] != key:
            self._decoded = (key, load_rgb(path))
        return self._decoded[1]

    def tile_label(self, rep: Any) -> str:
        return figures(self.coverages.get(rep.name), self.crops.get(rep.name)) + Path(rep.name).name

    def show_coverages(self, coverages: dict[str, float | None]) -> None:
        """The scan's second pass: coverage figures arrive after the tiles and thumbnails."""
        from sdstudio.tui.widgets.thumbgrid import ThumbGrid

        self.coverages = coverages
        grid = self.query_one(ThumbGrid)
        for index, rep in enumerate(self.shown):
            grid.retitle(index, self.tile_label(rep), rep.status)
        if self.selected is not None:
            self.query_one("#ds-info").update(self.info_text(self.selected))
            self._refresh_crop()

    def mask_line(self, rep: Any) -> str:
        """The info line's mask and crop part."""
        cov = self.coverages.get(rep.name, -1.0)
        mask = "mask …" if cov == -1.0 else f"mask {cov:.1%}" if cov is not None else "no mask"
        return f"\n{mask} · {describe(self.crops.get(rep.name))}"

    def crop_for(self, rep: Any) -> Box | None:
        """The box the preview draws: the editor's while editing this file, else the stored one."""
        editor = self.query_one(CropEditor)
        if editor.editing and editor.name_ == rep.name:
            return editor.box
        box = self.crops.get(rep.name)
        return clip_box(box, (rep.width, rep.height)) if box else None

    def mask_for_preview(self, rep: Any) -> Any:
        """The image's mask when the overlay is on (None otherwise, or when it has none)."""
        if not self.overlay or self.folder is None:
            return None
        from sdstudio.core.masks.source import load_mask

        try:
            return load_mask(self.folder / rep.name, self.folder)
        except (OSError, ValueError):
            return None

    def overlay_label(self, rep: Any) -> str:
        """Above the original: the keys, or with the overlay on, what it shows."""
        cov = self.coverages.get(rep.name)
        if not self.overlay:
            return "original · [b]m[/] mask [b]c[/] crop"
        return f"mask {cov:.0%} (dim: bg)" if cov is not None else "no mask"

    # keys
    def action_toggle_mask(self) -> None:
        self.overlay = not self.overlay
        self._refresh_crop()

    def action_edit_crop(self) -> None:
        rep = self.selected
        if rep is None or not rep.width or self.folder is None:
            self.notify("select an image first", severity="warning")
            return
        from PIL import Image

        from sdstudio.core.masks.source import load_mask

        size = (rep.width, rep.height)
        try:
            mask = load_mask(self.folder / rep.name, self.folder)
        except (OSError, ValueError):
            mask = None
        if mask is not None and mask.size != size:  # a mask made at another size: its box in image pixels
            mask = mask.resize(size, Image.Resampling.NEAREST)
        aspect = bucket_aspect(rep.width, rep.height, self.resolution, self.bucketed)
        box = self.crops.get(rep.name)
        self.query_one(CropEditor).start(rep.name, size, aspect, clip_box(box, size) if box else None, mask)
        self._refresh_crop()

    def on_crop_editor_changed(self, event: CropEditor.Changed) -> None:
        self._refresh_crop()

    def on_crop_editor_done(self, event: CropEditor.Done) -> None:
        from sdstudio.core.masks.crops import write_crops

        if event.accepted and self.folder is not None:
            try:
                where = write_crops(self.folder, {event.name: event.box})
            except OSError as exc:
                self.notify(f"could not save the crop: {exc}", severity="error")
                return
            if event.box is None:
                self.crops.pop(event.name, None)
            else:
                self.crops[event.name] = event.box
            self.notify(f"{describe(event.box)} saved to {where.name}")
            self.retitle_file(event.name)
        if self.selected is not None:
            self.query_one("#ds-info").update(self.info_text(self.selected))
            self._refresh_crop()
        self.query_one("#ds-grid").focus()  # where editing started (hiding the editor moved the focus on)

    def retitle_file(self, name: str) -> None:
        from sdstudio.tui.widgets.thumbgrid import ThumbGrid

        for index, rep in enumerate(self.shown):
            if rep.name == name:
                self.query_one(ThumbGrid).retitle(index, self.tile_label(rep), rep.status)

    # whole-folder passes
    def _batch(self, kind: str) -> None:
        from sdstudio.tui.screens.mask_batch import MASKS, MaskBatchScreen, default_prompt

        folder, report = self.folder, self.report
        if folder is None or report is None or not report.usable:
            self.notify("open a folder with images first", severity="warning")
            return
        sizes = {f.name: (f.width, f.height) for f in report.usable}
        res, bucketed = self.resolution, self.bucketed
        masker = "demo" if getattr(self, "model", "demo") == "demo" else ""
        prompt = default_prompt(folder, report.caption_store is not None) if kind == MASKS else ""
        screen = MaskBatchScreen(kind, folder, sorted(sizes), masker=masker, prompt=prompt,
                                 bucket_resolution=res if bucketed else None)
        self.app.push_screen(screen, self._batch_done)

    def _batch_done(self, written: str | None) -> None:
        """Back from Mask all / Crop all: say what was written and check the folder again."""
        if written and self.folder is not None:
            self.notify(written)
            self.open_folder(self.folder)

    def action_mask_all(self) -> None:
        self._batch("masks")

    def action_crop_all(self) -> None:
        self._batch("crops")
