"""Train: set up a run in a form (or a TOML file), start it, watch it, stop it.

The run itself lives in the App (one thread worker, see app.py) so it goes on while you look
at other screens; this screen draws the App's TrainingSession a few times a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Header, Input, Label, Select, Static

from sdstudio.core.config import TrainConfig, build_config, load_config, save_toml
from sdstudio.core.errors import ConfigError, SdstudioError
from sdstudio.core.paths import data_dir
from sdstudio.tui.widgets.config_form import FIELD_NAMES, ConfigForm, to_text
from sdstudio.tui.widgets.queue_panel import QueuePanel
from sdstudio.tui.widgets.train_live import TrainingView
from sdstudio.tui.screens.base import StudioScreen
from sdstudio.tui.widgets.footer import StudioFooter

DEFAULT_TOML = "train.toml"


def initial_config(path: Path | None) -> tuple[dict[str, Any], str]:
    """The form's starting values: the settings' train_config, else the demo model on sample data."""
    candidates = [path] if path else []
    candidates.append(data_dir() / "configs" / "demo-text2image.toml")  # the demo model on the shapes set
    for candidate in candidates:
        if candidate is not None and candidate.exists():
            try:
                return load_config(candidate).to_dict(), str(candidate)
            except SdstudioError:
                continue
    cfg = TrainConfig()
    shapes = data_dir() / "shapes"
    if shapes.is_dir():
        cfg.train_data_dir = str(shapes)
    return cfg.to_dict(), DEFAULT_TOML


class TrainScreen(StudioScreen):
    AUTO_FOCUS = "#field-method"  # the first choice; a Select leaves the digits to the screen switch
    DEFAULT_CSS = """
    TrainScreen #train-body { height: 1fr; }
    TrainScreen #setup { width: 44; min-width: 36; border-right: solid $panel; padding: 0 1; }
    TrainScreen #config-error { color: $error; height: auto; max-height: 3; }
    TrainScreen #also-set { color: $text-muted; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainScreen #memory { color: $text-muted; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainScreen #file-row { height: 1; }
    TrainScreen #file-row Label { width: 6; color: $text-muted; }
    TrainScreen #file-row Input { width: 1fr; }
    """
    BINDINGS = [
        Binding("ctrl+r", "start", "Start", id="train.start", tooltip="Start a training run with this form"),
        Binding("ctrl+g", "stop", "Stop", id="train.stop", tooltip="Stop after this step, saving a checkpoint"),
        Binding("ctrl+n", "sample_now", "Sample", id="train.sample_now",
                tooltip="Render validation samples after the current step"),
        Binding("ctrl+s", "save_now", "Save", id="train.save_now",
                tooltip="Save a checkpoint after the current step"),
        Binding("ctrl+b", "start_detached", "Start in background", id="train.start_detached", show=False,
                tooltip="Start a run in the background: it goes on if you quit or the SSH connection drops"),
        Binding("ctrl+f", "queue_add", "Queue", id="train.queue_add", show=False,
                tooltip="Add this form to the run queue (trained one after another in the background)"),
        Binding("ctrl+o", "load_toml", "Load TOML", id="train.load_toml", show=False,
                tooltip="Fill the form from the TOML file named in the File row"),
        Binding("ctrl+y", "save_toml", "Save TOML", id="train.save_toml", show=False,
                tooltip="Write the form to the TOML file named in the File row"),
        Binding("escape", "leave_field", "Leave field", id="train.leave_field", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        settings = getattr(self.app, "settings", None)
        self._base, self._toml_path = initial_config(getattr(settings, "train_config", None))
        self._error_text = ""
        self._validation_pending = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="train-body"):
            with Vertical(id="setup"):
                yield Label("[b]Run setup[/b]  [dim]Tab: fields · Esc: leave[/dim]")
                yield ConfigForm(self._base, id="form")
                yield Static("", id="memory")  # the memory estimate, recomputed as the form changes
                yield Static("", id="also-set")
                yield Static("", id="config-error")
                with Horizontal(id="file-row"):
                    yield Label("File")
                    yield Input(self._toml_path, compact=True, id="toml-path")
                yield QueuePanel(id="queue")
            yield TrainingView(id="live")
        yield StudioFooter(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "Train"
        self.set_interval(0.25, self._sync)
        self._show_also_set()
        self.validate()
        self._sync()

    def on_screen_resume(self) -> None:
        if self.focused is None:  # back from another screen: Enter works on Method at once
            self.query_one("#field-method", Select).focus()
        self._sync()

    def _show_also_set(self) -> None:
        """The config's settings that have no row in the form (a loaded TOML's snr_gamma, ...):
        listed at the end of the form, and counted under it, so the form never hides what the run
        will use."""
        defaults = TrainConfig().to_dict()
        extra = [(name, _short(name, value)) for name, value in self._base.items()
                 if name not in FIELD_NAMES and name != "with_prior_preservation" and value != defaults.get(name)]
        self.query_one(ConfigForm).show_extra(extra)
        names = ", ".join(name for name, _ in extra)
        also = self.query_one("#also-set", Static)
        also.update(Text(f"+{len(extra)} at the end: {names}") if extra else "")
        also.display = bool(extra)

    def _sync(self) -> None:
        self.query_one(TrainingView).sync(self.app.session)  # type: ignore[attr-defined]
        busy = self.app.session.busy  # type: ignore[attr-defined]
        if busy != getattr(self, "_was_busy", None):
            self._was_busy = busy
            self.refresh_bindings()

    # validation
    def validate(self) -> TrainConfig | None:
        """The form as a checked TrainConfig, or None with the error shown next to its row."""
        form = self.query_one(ConfigForm)
        error = self.query_one("#config-error", Static)
        try:
            cfg = build_config({**self._base, **form.values()}, source="form")
        except ConfigError as exc:
            form.mark(exc.field)
            self._error_text = str(exc).removeprefix("form: ")
            error.update(self._error_text)
            error.display = True
            return None
        form.mark(None)
        self._error_text = ""
        error.update("")
        error.display = False  # no blank row under the form
        self._estimate(cfg)
        return cfg

    def _estimate(self, cfg: TrainConfig) -> None:
        """The memory estimate of this form, in a thread (it reads the model's file headers and lists
        the dataset folder); the newest form wins."""
        from textual.worker import get_current_worker

        from sdstudio.core.training.memory_estimate import estimate_config, likely_device

        def work() -> None:
            try:
                text = estimate_config(cfg, likely_device()).short()
            except Exception as exc:  # noqa: BLE001 - advice only: say why there is none
                text = f"memory estimate: - ({type(exc).__name__})"
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self._show_memory, text)

        self.run_worker(work, thread=True, exclusive=True, group="memory-estimate")

    def _show_memory(self, text: str) -> None:
        for line in self.query("#memory").results(Static):  # none once the screen is going away
            line.update(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "toml-path":
            self._validate_soon()

    def on_select_changed(self, event: Select.Changed) -> None:
        self._validate_soon()

    def _validate_soon(self) -> None:
        """One validation per burst of changes: every field posts Changed when the form is filled
        (14 at mount, before the first paint), and each validation restyles the rows."""
        if not self._validation_pending:
            self._validation_pending = True
            self.call_after_refresh(self._validate_now)

    def _validate_now(self) -> None:
        self._validation_pending = False
        self.validate()

    # actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        busy = self.app.session.busy  # type: ignore[attr-defined]
        if action in ("start", "start_detached"):  # hidden rather than greyed, so the footer fits 80 columns
            return not busy
        if action in ("stop", "sample_now", "save_now"):
            return busy
        return True

    def action_start(self) -> None:
        cfg = self.validate()
        if cfg is None:
            self.notify(self._error_text, title="Cannot start", severity="error")
            return
        if self.app.wants_detached():  # type: ignore[attr-defined]
            self.app.start_detached(cfg)  # type: ignore[attr-defined]
        else:
            self.app.start_training(cfg)  # type: ignore[attr-defined]
        self.refresh_bindings()

    def action_start_detached(self) -> None:
        cfg = self.validate()
        if cfg is None:
            self.notify(self._error_text, title="Cannot start", severity="error")
            return
        self.app.start_detached(cfg)  # type: ignore[attr-defined]
        self.refresh_bindings()

    def action_queue_add(self) -> None:
        """Queue the form as it is (frozen now); the background runner trains it in turn."""
        from sdstudio.core.runs import queue as run_queue
        from sdstudio.core.paths import runs_root
        from sdstudio.core.runs.queue_runner import ensure_runner

        cfg = self.validate()
        if cfg is None:
            self.notify(self._error_text, title="Cannot queue", severity="error")
            return
        staged = runs_root() / run_queue.QUEUE_DIR / f"{self._toml_file().stem or 'studio'}.toml"
        try:
            save_toml(cfg, staged)
            item = run_queue.add(runs_root(), str(staged), {}, start_runner=ensure_runner)
        except (SdstudioError, OSError) as exc:
            self.notify(str(exc), title="Cannot queue", severity="error", timeout=10)
            return
        finally:
            staged.unlink(missing_ok=True)
        self.query_one(QueuePanel).refresh_queue()
        self.notify(f"Queued {item.run_name}: the background runner trains it in turn.")

    def action_stop(self) -> None:
        if self.app.session.request_stop():  # type: ignore[attr-defined]
            self.notify("Stopping after this step (a checkpoint is kept)")
            self._sync()

    def action_sample_now(self) -> None:
        session = self.app.session  # type: ignore[attr-defined]
        if session.control is not None:
            session.control.request_sample()
            session.log_line("sample requested: after the current step")
            self.notify("Samples after the current step")

    def action_save_now(self) -> None:
        session = self.app.session  # type: ignore[attr-defined]
        if session.control is not None:
            session.control.request_save()
            session.log_line("checkpoint requested: after the current step")
            self.notify("Checkpoint after the current step")

    def use_dataset(self, fields: dict[str, Any]) -> None:
        """Fill the form from the Dataset screen (fields the form lacks go into the base config)."""
        self._base = {**self._base, **fields}
        self.query_one(ConfigForm).fill(self._base)
        self._show_also_set()
        if self.validate() is not None:
            folder = fields.get("train_data_dir") or fields.get("instance_data_dir")
            self.notify(f"Training on {folder}")

    def action_leave_field(self) -> None:
        self.set_focus(None)

    def _toml_file(self) -> Path:
        return Path(self.query_one("#toml-path", Input).value.strip() or DEFAULT_TOML).expanduser()

    def action_load_toml(self) -> None:
        path = self._toml_file()
        try:
            cfg = load_config(path)
        except SdstudioError as exc:
            self.notify(str(exc), title="Cannot load", severity="error", timeout=8)
            return
        self._base = cfg.to_dict()
        self.query_one(ConfigForm).fill(self._base)
        self._show_also_set()
        self.validate()
        self.notify(f"Loaded {path}")

    def action_save_toml(self) -> None:
        cfg = self.validate()
        if cfg is None:
            self.notify("Fix the field marked in red before saving.", severity="error")
            return
        path = self._toml_file()
        try:
            save_toml(cfg, path)
        except OSError as exc:
            self.notify(f"{path}: {exc}", title="Cannot save", severity="error")
            return
        self.notify(f"Saved {path}")


def _short(name: str, value: Any) -> str:
    """A setting's value in a few characters (paths by their name)."""
    text = to_text(name, value)
    if isinstance(value, str) and ("/" in text or "\\" in text):
        text = Path(text).name
    return text if len(text) <= 24 else text[:23] + "…"
