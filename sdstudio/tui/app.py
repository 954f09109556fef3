"""The studio app: five screens one key away, the training worker, keymap, theme, hang-up.

Screens are Textual modes built on first visit, so opening the studio imports only the first
screen; torch and diffusers load inside the training worker, after the first paint.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from sdstudio.core.events import TrainerControl
from sdstudio.tui.hangup import HangupGuard
from sdstudio.tui.palette import palette_commands
from sdstudio.tui.screens.resume import is_resumable
from sdstudio.tui.session import TrainerMessage, TrainingSession
from sdstudio.tui.settings import Settings, load_settings

SCREENS = (  # mode, module, class, key, footer label (short: all five fit in 80 columns)
    ("dataset", "dataset", "DatasetScreen", "1", "Data"),
    ("train", "train", "TrainScreen", "2", "Train"),
    ("checkpoints", "checkpoints", "CheckpointsScreen", "3", "Ckpts"),
    ("generate", "generate", "GenerateScreen", "4", "Gen"),
    ("merge", "merge", "MergeScreen", "5", "Merge"),
)


# Escape then a digit, typed fast or sent in one packet over SSH, reaches Textual as one sequence
# that it reads as a macOS Option character (ESC 2 -> "™"), which a text field would type (and
# Textual gives printable keys to a focused field before any binding). The app catches these keys
# first and does what Escape-then-digit means: leave the field, go to that screen. (The same
# characters typed on purpose, as Option+digit, switch screens too: the price of Escape never failing.)
ESCAPE_DIGIT_KEYS = {"inverted_exclamation_mark": "dataset", "trade_mark_sign": "train", "pound_sign": "checkpoints",
                     "cent_sign": "generate", "infinity": "merge"}


def _screen_factory(module: str, cls: str) -> Callable[[], Screen]:
    def build() -> Screen:
        return getattr(importlib.import_module(f"sdstudio.tui.screens.{module}"), cls)()

    return build


class StudioApp(App[None]):
    TITLE = "sdstudio"
    CSS = """
    Screen { layout: vertical; }
    .muted { color: $text-muted; }
    .error { color: $error; }
    /* focus is always visible, compact widgets included (their own cue is a 5 % tint) */
    Select:focus > SelectCurrent { background: $block-cursor-background; }
    Select:focus > SelectCurrent Static#label, Select:focus > SelectCurrent .arrow {
        color: $block-cursor-foreground; text-style: bold; }
    Button:focus { background: $block-cursor-background; color: $block-cursor-foreground; text-style: bold; }
    Input.-textual-compact:focus { background-tint: $accent 25%; }
    TextArea:focus { border: tall $accent; }
    DataTable:focus { background-tint: $accent 8%; }
    """
    MODES = {mode: _screen_factory(module, cls) for mode, module, cls, _, _ in SCREENS}
    BINDINGS = [
        # F1-F5 work from anywhere, inside a text field too (priority), and pass through SSH and tmux;
        # the digits work wherever no field has the focus (Escape leaves a field).
        *(Binding(f"f{key}", f"app.switch_mode('{mode}')", label, id=f"screen.{mode}.fkey", priority=True,
                  key_display=f"F{key}", tooltip=f"Go to the {mode.title()} screen") for mode, _, _, key, label in SCREENS),
        *(Binding(key, f"app.switch_mode('{mode}')", label, id=f"screen.{mode}", show=False,
                  tooltip=f"Go to the {mode.title()} screen") for mode, _, _, key, label in SCREENS),
        Binding("escape", "leave_field", "Leave field", id="app.leave_field", show=False,
                tooltip="Leave the text field (then 1-5 switch screens)"),
        Binding("ctrl+a", "select_all", "Select all", id="app.select_all", show=False, priority=True,
                tooltip="Select all the text of the focused field"),
        Binding("ctrl+t", "toggle_dark", "Light/dark", id="app.toggle_theme", show=False),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", show=False, priority=True),
        Binding("f6", "resume_offered", "Resume", id="app.resume_offered", priority=True, key_display="F6",
                show=False, tooltip="Resume the run the bar at the top offers"),  # the bar shows the key
    ]

    def __init__(self, settings: Settings | None = None, run_dir: str | Path | None = None,
                 start_screen: str | None = None) -> None:
        self.open_run = Path(run_dir).resolve() if run_dir else None
        self.start_screen = start_screen or ("checkpoints" if self.open_run else "train")
        self.DEFAULT_MODE = self.start_screen  # the first screen is built directly, no blank one before it
        super().__init__()
        self.settings = settings or Settings()
        self.title = f"sdstudio · {home_label()}"  # where runs, merges and exports go (core/paths.py)
        self.session = TrainingSession()
        self._exit_when_idle = False
        self.hung_up = False
        self.remote = None  # a RemoteRun while the session follows a run trained by another process
        self.resume_offer = None  # the ResumeOffer bar while a run is offered for resuming
        self._trainer_idle = threading.Event()
        self._trainer_idle.set()
        self.hangup_guard = HangupGuard(self.on_hangup, self._stop_training_for_hangup, self._trainer_idle)

    # lifecycle
    def on_mount(self) -> None:
        if self.settings.theme != self.theme:  # each change restyles every widget: only when needed
            try:
                self.theme = self.settings.theme
            except Exception:  # an unknown theme name in the config file
                self.notify(f"unknown theme {self.settings.theme!r}; using textual-dark", severity="warning")
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        self._install_hangup_handler()
        self.set_interval(0.5, self._follow_tick)  # detached runs: the session follows the run folder
        self._attach_or_offer_resume()  # decided before the first paint: no key typed meanwhile is lost

    def _install_hangup_handler(self) -> None:
        self.hangup_guard.install()

    def _stop_training_for_hangup(self) -> None:
        """The hang-up contract, from any thread: checkpoint now, then stop (flags are thread-safe)."""
        self.hung_up = True
        control = self.session.control
        if control is not None and not self._trainer_idle.is_set():
            control.request_save()
            control.request_stop()
            self._exit_when_idle = True
            if control.run_path is not None:  # if the deadline ends it mid-step, the run still reads stopped
                from sdstudio.core.runs.run_dir import RunDir

                threading.Thread(target=RunDir(control.run_path).mark_stopping, daemon=True).start()

    def on_hangup(self) -> None:
        """The terminal is gone (SSH dropped): exit as soon as the trainer has saved and stopped.

        `HangupGuard` has already pointed the output at /dev/null and told the trainer; its
        watchdog ends the process if this shutdown blocks.
        """
        self._stop_training_for_hangup()
        if self.session.busy and not self._trainer_idle.is_set() and self.remote is None:
            self.session.request_stop()
        else:
            self.exit()

    # detached runs (another process trains; this studio follows the files, see remote_run.py)
    def wants_detached(self) -> bool:
        """Does ctrl+r train in the background? Setting detach_runs; "auto" means on an SSH login."""
        from sdstudio.core.runs.detach import on_ssh_login

        choice = self.settings.detach_runs
        return choice == "always" or (choice == "auto" and on_ssh_login())

    def start_detached(self, cfg: object) -> bool:
        from sdstudio.core.errors import SdstudioError
        from sdstudio.tui.remote_run import RemoteRun, start_detached_run

        if self.session.busy:
            self.notify("A training run is already going: stop it first.", severity="warning")
            return False
        try:
            run_dir, proc, since = start_detached_run(cfg)
        except (SdstudioError, OSError) as exc:
            self.notify(str(exc), title="Cannot start", severity="error", timeout=10)
            return False
        self.remote = RemoteRun(self.session, run_dir, self._remote_error, process=proc, since=since)
        self.notify(f"Training {run_dir.name} in the background (pid {proc.pid}): it goes on if you quit or the "
                    "connection drops.", timeout=8)
        return True

    def attach(self, run_dir: Path) -> None:
        """Follow a run another process trains (loss, samples, status, log) on the Train screen."""
        from sdstudio.tui.remote_run import RemoteRun

        if self.session.busy:
            return
        self.remote = RemoteRun(self.session, Path(run_dir), self._remote_error)
        self.notify(f"Following {Path(run_dir).name}, trained by another process (Train screen, 2).")

    def _remote_error(self, message: str) -> None:
        self.notify(message, title="Command not delivered", severity="error", timeout=10)

    def _follow_tick(self) -> None:
        if self.remote is None and self.session.state == "idle" and not self.hung_up:
            self._attach_live()  # a trainer started after this studio (`train --detach`, the queue runner)
        if self.resume_offer is not None and (self.session.busy or not is_resumable(self.resume_offer.run)):
            self.withdraw_resume_offer()  # something trains now, or the offered run is live or done
        if self.remote is not None:
            self.remote.tick()
            if self.remote.done:
                self.remote = None
                if self.session.state == "failed" and not self.hung_up:
                    self.notify(self.session.error or "training failed", title="Training failed",
                                severity="error", timeout=15)

    def _attach_live(self) -> bool:
        """Follow the run a live trainer holds: the run this studio was opened on, else the newest."""
        from sdstudio.core.runs.lock import live_trainer
        from sdstudio.core.runs.run_dir import RunDir
        from sdstudio.tui.remote_run import newest_live_run

        if self.open_run is not None:
            live = self.open_run if live_trainer(self.open_run, RunDir(self.open_run).status()) else None
        else:
            live = newest_live_run()
        if live is not None:
            self.attach(live)
        return live is not None

    def _attach_or_offer_resume(self) -> None:
        from sdstudio.tui.screens.resume import ResumeOffer, find_resumable

        if self._attach_live() or self.open_run is not None:
            return
        run = find_resumable()
        if run is not None:
            self.resume_offer = ResumeOffer(run)
            self.screen.mount(self.resume_offer, before=0)

    def withdraw_resume_offer(self) -> None:
        if self.resume_offer is not None:
            self.resume_offer.remove()
            self.resume_offer = None
            self.refresh_bindings()

    def action_resume_offered(self) -> None:
        offer = self.resume_offer
        if offer is None:
            return
        self.withdraw_resume_offer()
        if is_resumable(offer.run):
            self.resume_training(offer.run.path)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resume_offered":
            return self.resume_offer is not None  # F6 only while an offer stands
        return True

    # training (one App-level thread worker)
    def start_training(self, cfg: object, resume: Path | None = None) -> bool:
        """Start `sdstudio.core.training.trainer.train` in the worker; False if a run is already going."""
        if self.session.busy:
            self.notify("A training run is already going: stop it first.", severity="warning")
            return False
        control = TrainerControl()
        self._trainer_idle.clear()
        self.session.begin(control, total=int(getattr(cfg, "max_train_steps", 0) or 0))
        if resume is not None:
            self.session.run_dir = Path(resume)
        self.run_worker(partial(self._train_in_thread, cfg, control, resume), name="training", group="training",
                        thread=True, exit_on_error=False)
        return True

    def resume_training(self, run_dir: Path) -> None:
        from sdstudio.core.config import load_config
        from sdstudio.core.errors import SdstudioError

        try:
            cfg = load_config(Path(run_dir) / "run.toml")
        except SdstudioError as exc:
            self.notify(str(exc), title="Cannot resume", severity="error", timeout=10)
            return
        self.switch_mode("train")
        if self.start_training(cfg, resume=Path(run_dir)):
            self.notify(f"Resuming {Path(run_dir).name}")

    def _train_in_thread(self, cfg: object, control: TrainerControl, resume: Path | None) -> object:
        # torch and diffusers load in there, off the UI thread; the run lock and the command reader
        # let `sdstudio stop|sample|save` and other studios reach this run too
        from sdstudio.core.training.launch import train_with_commands

        try:
            return train_with_commands(cfg, on_event=lambda event: self.post_message(TrainerMessage(event)),
                                       control=control, resume=resume)
        finally:
            self._trainer_idle.set()

    def on_dataset_screen_use_dataset(self, message: object) -> None:
        """The Dataset screen hands its folder over: open Train with those fields filled in."""
        fields = dict(getattr(message, "fields", {}))
        self.switch_mode("train")
        self.call_after_refresh(lambda: self.screen.use_dataset(fields))  # type: ignore[attr-defined]

    def on_trainer_message(self, message: TrainerMessage) -> None:
        self.session.apply(message.event)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "training" or event.state not in (
                WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        self.session.thread_exited(event.worker.error if event.state == WorkerState.ERROR else None)
        if self.session.state == "failed" and not self.hung_up:
            self.notify(self.session.error or "training failed", title="Training failed", severity="error",
                        timeout=15)
        if self._exit_when_idle:
            self.exit()

    # actions
    async def action_quit(self) -> None:
        if self.session.busy and self.remote is None:  # a detached run goes on without the studio
            if self._exit_when_idle:
                self.notify("Still stopping: waiting for the trainer to finish its step…")
                return
            self.session.request_stop()
            self._exit_when_idle = True
            self.notify("Stopping the training run; the studio closes when it has stopped.")
            return
        self.exit()

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def action_leave_field(self) -> None:
        """Escape from a text field: focus goes to the screen, so the digits switch screens again."""
        from textual.widgets import Input, TextArea

        from sdstudio.tui.widgets.slider import FloatSlider

        if isinstance(self.screen.focused, (Input, TextArea, FloatSlider)):
            self.screen.set_focus(None)

    async def on_event(self, event: events.Event) -> None:
        """Escape and a digit that arrived as one key (see ESCAPE_DIGIT_KEYS): leave the field,
        then switch, before the focused field can type it."""
        if isinstance(event, events.Key) and not event.is_forwarded and event.key in ESCAPE_DIGIT_KEYS:
            event.stop()
            self.action_leave_field()
            self.switch_mode(ESCAPE_DIGIT_KEYS[event.key])
            return
        await super().on_event(event)

    def action_select_all(self) -> None:
        """ctrl+a selects everything in a text field, as in an editor (Home still goes to the line start)."""
        from textual.actions import SkipAction
        from textual.widgets import Input, TextArea

        focused = self.screen.focused
        if isinstance(focused, (Input, TextArea)):
            focused.select_all()
        else:
            raise SkipAction()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The five screens, then every action of the current screen once (tui/palette.py)."""
        yield from palette_commands(self, screen, super().get_system_commands(screen),
                                    [(mode, key) for mode, _, _, key, _ in SCREENS])


def home_label() -> str:
    """The home folder as the header shows it: `~/...` under the user's home."""
    from sdstudio.core.errors import SdstudioError
    from sdstudio.core.paths import home

    try:
        path = home()
    except SdstudioError:
        return "home not set"
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def run_app(run_dir: str | None = None, images: str | None = None) -> int | None:
    """Entry point for `sdstudio` without a command (see sdstudio.cli)."""
    from sdstudio.core.paths import home
    from sdstudio.tui import images as tui_images

    settings = load_settings()
    home()  # a home setting that cannot be used is refused here, with its fix, before the screen opens
    if run_dir is not None and not (Path(run_dir) / "run.toml").exists():
        from sdstudio.core.errors import SdstudioError

        raise SdstudioError(f"{run_dir}: not a run directory (no run.toml)")
    # textual-image must probe the terminal before Textual owns stdin
    tui_images.init_images(tui_images.choose_renderer(images, settings.images))
    app = StudioApp(settings=settings, run_dir=run_dir)
    app.run()
    if app.hung_up:  # nobody is watching: skip the slow interpreter teardown (see tui/hangup.py)
        os._exit(0)
    return 0
