"""Reconnect at any moment and the resume offer: the studio follows a trainer that starts after
it opened, and the offer is a bar that takes no key (only F6 resumes) and never names a live run."""

from __future__ import annotations

import time
from pathlib import Path

from sdstudio.core.runs import lock as run_lock
from sdstudio.tui.app import StudioApp
from test_tui_fixtures import make_run, wait_for


def _titles(app: StudioApp) -> list[str]:
    return [n.title for n in app._notifications]


async def test_the_resume_offer_takes_no_key_and_only_f6_resumes(runs_root: Path) -> None:
    from sdstudio.tui.screens.resume import ResumeOffer

    run = make_run(runs_root, "cut-off", checkpoints=(10,), state="stopped")
    run.run_toml.write_text("max_train_steps = [\n")  # resuming it fails at once, and says so
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        offer = app.screen.query_one(ResumeOffer)
        assert offer.run.path == run.path and "F6" in str(offer.render())
        assert type(app.screen).__name__ == "TrainScreen" and "ctrl+r" in app.screen.active_bindings  # Start works
        await pilot.press("r", "n", "enter")  # stray keys: none of them answers the offer
        await pilot.pause(0.2)
        assert "Cannot resume" not in _titles(app) and app.resume_offer is offer
        await pilot.press("f6")
        await pilot.pause(0.2)
        assert "Cannot resume" in _titles(app) and app.resume_offer is None
        assert not app.screen.query(ResumeOffer)


async def test_a_trainer_that_starts_after_the_studio_is_followed_within_2s_and_not_offered(runs_root: Path) -> None:
    older = make_run(runs_root, "older", checkpoints=(10,), state="stopped")
    resumed = make_run(runs_root, "resumed", checkpoints=(10,), state="stopped")
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        assert app.remote is None  # nothing trains yet
        # `sdstudio train --resume resumed --detach` from another terminal: its trainer takes the run
        trainer = run_lock.acquire(resumed.path)
        try:
            resumed.update_status(state="starting", updated=time.time())
            started = time.monotonic()
            await wait_for(pilot, lambda: app.remote is not None, timeout=5)
            assert time.monotonic() - started <= 2.0
            assert app.session.run_dir == resumed.path and app.session.busy
            await pilot.pause(0.6)
            assert getattr(app, "resume_offer", None) is None  # no offer while a run trains; never the live one
        finally:
            trainer.release()
    assert older.status()["state"] == "stopped"


def test_a_stop_cut_off_by_a_kill_reads_stopped_on_checkpoints_and_is_offered(runs_root: Path) -> None:
    """The trainer marked the run 'stopping', saved step 20 and was killed before writing 'stopped':
    the Checkpoints run list and the resume offer settle it, as `sdstudio runs` does."""
    from sdstudio.tui.screens.checkpoints import run_label
    from sdstudio.tui.screens.resume import is_resumable

    run = make_run(runs_root, "cut-off", steps=(0, 10, 20), checkpoints=(10, 20), state="running")
    run.update_status(step=19, total=40, stopping=True)
    run_lock.lock_path(run.path).touch()  # its trainer's lock file, held by nobody now
    assert "[stopped 20/40]" in run_label(run)
    assert run.status()["state"] == "stopped" and is_resumable(run)
