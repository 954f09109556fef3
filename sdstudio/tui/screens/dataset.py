"""Dataset screen: check a folder file by file, fix captions, see what the model will see,
look at masks and set crops (the mask and crop part is dataset_masks.py).

The checker, the caption store and the crop all come from `sdstudio.core.dataset`, so what this
screen shows is exactly what training will use. Scans, thumbnails, crops and class images are
made in thread workers; the screen only swaps finished pictures in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape as _escape
from textual.message import Message
from textual.widgets import Button, Collapsible, Header, Input, Label, Select, Static, TextArea
from textual.worker import get_current_worker

from sdstudio.core.paths import data_dir
from sdstudio.core.models import sampler_defaults as model_defaults
from sdstudio.core.training import buckets as bk
from sdstudio.tui.widgets.class_folder import ClassFolderPanel
from sdstudio.tui.crop_preview import preview_pair
from sdstudio.tui.images import Picture
from sdstudio.tui.widgets.thumbgrid import ThumbGrid, TileSpec
from sdstudio.tui.screens.base import StudioScreen
from sdstudio.tui.screens.dataset_masks import DatasetMasks, scan_crops
from sdstudio.tui.widgets.crop_editor import CropEditor
from sdstudio.tui.widgets.footer import StudioFooter

MAX_TILES = 400  # a grid of thousands of widgets would make the screen sluggish; the summary counts all
THUMB_PX = 48
PREVIEW_PX = 160


def summary_text(summary: dict[str, Any]) -> str:
    """One line a person reads before training: counts, sizes, duplicates, captions."""
    store = summary["caption_store"] or "none (DreamBooth folder)"
    parts = [
        f"[b]{summary['files']}[/] files",
        f"[$success]{summary['usable_images']} usable[/]",
        f"{summary['warnings']} warnings" if summary["warnings"] else "",
        f"[$error]{summary['bad']} bad[/]" if summary["bad"] else "0 bad",
        f"{summary['duplicates']} duplicates",
        f"{summary['missing_captions']} captions missing",
        f"sides {summary['min_side']}-{summary['max_side']} px (median {summary['median_side']})",
        f"captions: {store}",
    ]
    return " · ".join(p for p in parts if p)


class DatasetScreen(DatasetMasks, StudioScreen):
    """Open a dataset folder, check it, edit captions, preview crops, hand it to training."""

    AUTO_FOCUS = "#ds-grid"  # the sample folder is open on entry: its files come first
    DEFAULT_CSS = """
    DatasetScreen #ds-top { height: 1; margin-bottom: 1; }
    DatasetScreen #ds-top Input { width: 1fr; }
    DatasetScreen #ds-top #ds-res { width: 6; }
    DatasetScreen #ds-top Select { width: 16; }
    DatasetScreen #ds-top Label { padding: 0 1; }
    DatasetScreen #ds-top Button { width: auto; min-width: 0; margin-left: 1; }
    DatasetScreen #ds-summary { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    DatasetScreen #ds-body { height: 1fr; }
    DatasetScreen #ds-grid { width: 1fr; min-width: 18; }
    DatasetScreen #ds-detail { width: 2fr; padding: 0 1; }
    DatasetScreen #ds-info { height: auto; }
    DatasetScreen #ds-crops { height: auto; }
    DatasetScreen #ds-crops > Vertical { width: 1fr; height: auto; }
    DatasetScreen .ds-pic { width: 24; height: 12; }
    DatasetScreen #ds-caption { height: 4; }
    DatasetScreen #ds-caption-row, DatasetScreen #ds-mask-row { height: 1; margin: 1 0 0 0; }
    DatasetScreen #ds-mask-row { margin-bottom: 1; }
    DatasetScreen #ds-caption-row Button, DatasetScreen #ds-mask-row Button { width: auto; min-width: 0; margin-right: 2; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save_caption", "Save", id="dataset.save_caption", tooltip="Save the caption"),
        Binding("ctrl+r", "rescan", "Check", id="dataset.rescan", tooltip="Check the folder again"),
        Binding("ctrl+g", "reroll_crop", "New crop", id="dataset.reroll_crop", show=False,
                tooltip="Preview another random crop"),
        Binding("ctrl+e", "caption_folder", "Caption", id="dataset.caption", show=False,
                tooltip="Caption the folder, then review each caption"),
        Binding("ctrl+o", "train", "Use", id="dataset.train",
                tooltip="Open the Train screen with this folder filled in"),
        Binding("m", "toggle_mask", "Mask", id="dataset.toggle_mask", show=False,
                tooltip="Show the image's mask over the preview (again: hide it)"),
        Binding("c", "edit_crop", "Crop", id="dataset.edit_crop", show=False,
                tooltip="Edit the selected image's crop box with the keyboard"),
        Binding("M", "mask_all", "Mask all", id="dataset.mask_all", show=False, tooltip="Mask every image"),
        Binding("C", "crop_all", "Crop all", id="dataset.crop_all", show=False, tooltip="Crop all to subject"),
    ]

    class UseDataset(Message):
        """Train on this folder: the app opens the Train screen with these fields filled in."""

        def __init__(self, fields: dict[str, Any]) -> None:
            super().__init__()
            self.fields = fields

    def __init__(self, folder: str | Path | None = None, model: str | Path | None = None,
                 resolution: int | None = None, **kwargs: Any) -> None:
        """Without a folder the studio opens on the sample data; the resolution defaults to the
        one the model is meant for (the demo's 64 px, else 512)."""
        super().__init__(**kwargs)
        self.model = str(model) if model else "demo"
        if folder is None and (data_dir() / "shapes").is_dir():
            folder = data_dir() / "shapes"
        self.folder = Path(folder) if folder else None
        self.initial_resolution = resolution or model_defaults(self.model)["size"] or 512
        self.report: Any = None
        self.shown: list[Any] = []  # FileReports behind the tiles, in tile order
        self.selected: Any = None
        self.crop_seed = 0
        self.crops: dict[str, Any] = {}  # file name -> stored crop box
        self.coverages: dict[str, float | None] = {}  # file name -> mask coverage (None: no mask)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="ds-top"):
            yield Input(str(self.folder or ""), placeholder="dataset folder (enter to open)", compact=True, id="ds-path")
            yield Button("Open", id="ds-open", compact=True)
            yield Label("res")
            yield Input(str(self.initial_resolution), type="integer", compact=True, id="ds-res")
            yield Select([("center crop", True), ("random crop", False), ("buckets", "bucket")], value=True,
                         allow_blank=False,
                         compact=True, id="ds-crop")
            yield Button("Train →", id="ds-train", variant="primary", compact=True, action="screen.train")
        yield Static("Open a folder of images (captions in metadata.jsonl, .txt or .caption files, or none for DreamBooth).",
                     id="ds-summary")
        with Horizontal(id="ds-body"):
            yield ThumbGrid(id="ds-grid")
            with VerticalScroll(id="ds-detail", can_focus=False):
                yield Static("", id="ds-info")
                yield CropEditor(id="ds-crop-editor")
                with Horizontal(id="ds-crops"):
                    with Vertical():
                        yield Label("original (red: the crop)", id="ds-original-label")
                        yield Picture(id="ds-original", classes="ds-pic")
                    with Vertical():
                        yield Label("what the model sees", id="ds-model-label")
                        yield Picture(id="ds-model", classes="ds-pic")
                yield TextArea("", id="ds-caption", soft_wrap=True, show_line_numbers=False)
                with Horizontal(id="ds-caption-row"):
                    yield Button("Save caption", id="ds-save", compact=True)
                    yield Button("New random crop", id="ds-reroll", compact=True)
                    yield Button("Caption folder…", id="ds-caption-folder", compact=True)
                with Horizontal(id="ds-mask-row"):
                    yield Button("Mask all… (M)", id="ds-mask-all", compact=True, action="screen.mask_all")
                    yield Button("Crop all to subject… (C)", id="ds-crop-all", compact=True, action="screen.crop_all")
                with Collapsible(title="DreamBooth class folder (prior preservation)", id="ds-class"):
                    yield ClassFolderPanel(id="ds-class-panel")
        yield StudioFooter(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "Dataset"
        if self.folder:
            self.open_folder(self.folder)

    # opening and checking
    @property
    def resolution(self) -> int:
        try:
            value = int(self.query_one("#ds-res", Input).value)
        except ValueError:
            return self.initial_resolution
        return value if value >= 8 else self.initial_resolution

    @property
    def center_crop(self) -> bool:
        """Centre (or, with buckets, centred-in-bucket) crops; False for random square crops."""
        return self.query_one("#ds-crop", Select).value is not False

    @property
    def bucketed(self) -> bool:
        return self.query_one("#ds-crop", Select).value == "bucket"

    def open_folder(self, folder: str | Path) -> None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            self.notify(f"{path}: not a folder", severity="error")
            return
        self.folder = path
        self.query_one("#ds-path", Input).value = str(path)
        self.query_one("#ds-summary", Static).update(f"checking {path} …")
        self._scan(path, self.resolution)

    @on(Input.Submitted, "#ds-path")
    @on(Button.Pressed, "#ds-open")
    def _open_pressed(self) -> None:
        self.open_folder(self.query_one("#ds-path", Input).value.strip())

    def action_rescan(self) -> None:
        if self.folder:
            self.open_folder(self.folder)
            self.notify(f"Checking {self.folder} again…")

    @work(thread=True, exclusive=True, group="dataset-scan")
    def _scan(self, folder: Path, resolution: int) -> None:
        from sdstudio.core.dataset import check_dataset, load_rgb
        from sdstudio.core.errors import SdstudioError
        from sdstudio.core.masks.batch import mask_coverages

        try:
            report = check_dataset(folder, resolution=resolution)
        except SdstudioError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        crops, problems = scan_crops(folder)
        self.app.call_from_thread(self._show_report, report, crops, problems)
        worker = get_current_worker()
        for index, rep in enumerate(self.shown):
            if worker.is_cancelled:
                return
            if not rep.width:
                continue
            try:
                image = load_rgb(folder / rep.name)
            except (OSError, ValueError):
                continue
            image.thumbnail((THUMB_PX, THUMB_PX))
            self.app.call_from_thread(self._set_thumbnail, index, image)
        coverages = mask_coverages(folder, [rep.name for rep in self.shown if rep.width])
        if not worker.is_cancelled:
            self.app.call_from_thread(self.show_coverages, coverages)

    async def _show_report(self, report: Any, crops: dict[str, Any], problems: list[str]) -> None:
        self.report, self.crops, self.coverages = report, crops, {}
        for problem in problems:
            self.notify(problem, severity="warning")
        self.shown = sorted(report.files, key=lambda f: (not f.width, f.name))[:MAX_TILES]  # images first
        more = len(report.files) - len(self.shown)
        text = summary_text(report.summary()) + " · " + bk.bucket_line(report.usable, self.resolution)
        if more > 0:
            text += f" · grid shows the first {len(self.shown)}"
        self.query_one("#ds-summary", Static).update(text)
        self.query_one("#ds-class-dir", Input).placeholder = f"class folder (default: {self._default_class_dir()})"
        grid = self.query_one(ThumbGrid)
        await grid.set_tiles([TileSpec(f.name, self.tile_label(f), f.status) for f in self.shown])
        if self.focused is None or self.focused.id == "ds-path":
            grid.focus()
        if not self.shown:
            self._show_file(None)

    def _set_thumbnail(self, index: int, image: Any) -> None:
        for grid in self.query(ThumbGrid):  # none once the studio is closing
            grid.set_thumbnail(index, image)

    # the selected file
    @on(ThumbGrid.Selected, "#ds-grid")
    def _tile_selected(self, event: ThumbGrid.Selected) -> None:
        if 0 <= event.index < len(self.shown):
            self._show_file(self.shown[event.index])

    @on(ThumbGrid.Activated, "#ds-grid")
    def _tile_activated(self, event: ThumbGrid.Activated) -> None:
        caption = self.query_one("#ds-caption", TextArea)
        if not caption.disabled:
            caption.focus()

    def _show_file(self, rep: Any) -> None:
        self.selected = rep
        caption = self.query_one("#ds-caption", TextArea)
        self.query_one("#ds-info", Static).update(self.info_text(rep))
        caption.load_text(rep.caption or "" if rep else "")
        caption.disabled = rep is None or not rep.width
        if rep is not None and rep.width:
            self._refresh_crop()
        else:
            self._set_crops(None, None)

    def info_text(self, rep: Any) -> str:
        """The selected file's line: name, size, verdict, bucket; its mask and crop below."""
        if rep is None:
            return "no file"
        colour = {"ok": "success", "warning": "warning"}.get(rep.status, "error")
        size = f"{rep.width}x{rep.height} {rep.mode}" if rep.width else "not an image"
        reason = f" — {rep.reason}" if rep.reason else ""
        placed = bk.place_files([rep], self.resolution) if rep.usable else {}
        bucket = ""
        if rep.name in placed:  # the aspect-ratio bucket it trains in with enable_bucket
            p, why = placed[rep.name]
            bucket = f"  bucket {p.bucket[0]}x{p.bucket[1]}" + (" (too small)" if why else "")
        masks = self.mask_line(rep) if rep.width else ""
        return f"[b]{_escape(rep.name)}[/]  {size}  [${colour}]{rep.status}{_escape(reason)}[/]{bucket}{masks}"

    @on(Select.Changed, "#ds-crop")
    @on(Input.Submitted, "#ds-res")
    def _refresh_crop(self) -> None:
        rep = self.selected
        if rep is None or not rep.width or self.folder is None:
            return
        res, box = self.resolution, self.crop_for(rep)
        w, h = (box[2], box[3]) if box else (rep.width, rep.height)
        if self.bucketed:
            p = bk.place(w, h, bk.bucket_sizes(res))
            why = bk.too_small(p, bk.DEFAULT_MAX_UPSCALE)
            text = f"model sees {p.bucket[0]}x{p.bucket[1]} ({'box' if box else 'bucket'}, {p.scale:.2f}x)"
            text += " — too small, skipped" if why else ""
        else:
            how = "box" if box else f"{'center' if self.center_crop else 'random'} crop"
            text = f"model sees {res}x{res} ({how})"
        self.query_one("#ds-model-label", Label).update(text)
        self.query_one("#ds-original-label", Label).update(self.overlay_label(rep))
        self._crop_preview(self.folder / rep.name, res, self.center_crop, self.crop_seed, self.bucketed, box, rep)

    @on(Button.Pressed, "#ds-reroll")
    def action_reroll_crop(self) -> None:
        self.crop_seed += 1
        if self.center_crop:
            self.query_one("#ds-crop", Select).value = False  # a reroll only means something for random crops
        else:
            self._refresh_crop()

    @work(thread=True, exclusive=True, group="dataset-crop")
    def _crop_preview(self, path: Path, resolution: int, center: bool, seed: int, bucketed: bool = False,
                      box: Any = None, rep: Any = None) -> None:
        try:
            image = self.decoded(path)
        except (OSError, ValueError) as exc:
            self.app.call_from_thread(self.notify, f"{path.name}: {exc}", severity="error")
            return
        mask = self.mask_for_preview(rep) if rep is not None else None
        original, seen = preview_pair(image, resolution, center, seed, bucketed, PREVIEW_PX, box, mask)
        if get_current_worker().is_cancelled:
            return
        self.app.call_from_thread(self._set_crops, original, seen)

    def _set_crops(self, original: Any, seen: Any) -> None:
        self.query_one("#ds-original").image = original
        self.query_one("#ds-model").image = seen

    # captions
    @on(Button.Pressed, "#ds-caption-folder")
    def action_caption_folder(self) -> None:
        from sdstudio.tui.screens.captions import open_captions

        open_captions(self)

    @on(Button.Pressed, "#ds-save")
    def action_save_caption(self) -> None:
        from sdstudio.core.dataset import OK, write_caption

        rep = self.selected
        if rep is None or self.folder is None or not rep.width:
            self.notify("select an image first", severity="warning")
            return
        text = self.query_one("#ds-caption", TextArea).text.strip()
        if not text:
            self.notify("type a caption first (enter on a tile jumps to the caption)", severity="warning")
            return
        try:
            where = write_caption(self.folder, rep.name, text)
        except OSError as exc:
            self.notify(f"could not save the caption: {exc}", severity="error")
            return
        rep.caption = text
        if rep.reason.startswith("no caption") and text:
            rep.status, rep.reason = OK, ""
            index = self.shown.index(rep)
            self.query_one(ThumbGrid).retitle(index, self.tile_label(rep), rep.status)
        if self.report is not None:
            self.query_one("#ds-summary", Static).update(summary_text(self.report.summary()))
        self._show_file(rep)
        self.notify(f"caption saved to {where.name}")

    # DreamBooth class images
    def _default_class_dir(self) -> Path | None:
        return self.folder.parent / f"{self.folder.name}-class" if self.folder else None

    def class_fields(self) -> dict[str, Any]:
        return self.query_one(ClassFolderPanel).fields(self._default_class_dir())

    # hand-off to training
    def train_fields(self) -> dict[str, Any]:
        """The Train form fields this folder implies (DreamBooth when it has no captions)."""
        if self.folder is None:
            return {}
        fields: dict[str, Any] = {"resolution": self.resolution, "center_crop": self.center_crop,
                                  "enable_bucket": self.bucketed}
        if self.report is not None and self.report.caption_store is None:
            fields.update(method="dreambooth", instance_data_dir=str(self.folder), train_data_dir=None)
            class_fields = self.class_fields()
            if class_fields["class_prompt"]:
                fields.update(class_fields, with_prior_preservation=True)
        else:
            fields.update(method="text2image", train_data_dir=str(self.folder), instance_data_dir=None)
        return fields

    def action_train(self) -> None:
        fields = self.train_fields()
        if not fields:
            self.notify("open a dataset folder first", severity="warning")
            return
        self.post_message(self.UseDataset(fields))
