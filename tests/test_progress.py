"""The long phases report their progress (what, k/N, ETA) as events and in status.json, so the
studio never shows a frozen "step 0/300" while class images are drawn or latents cached."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_train_values

from sdstudio.core import events as ev
from sdstudio.core.config import build_config
from sdstudio.core.runs.follow import RunFollower
from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training.trainer import train

PHASES = {"loading", "class images", "caching latents", "sampling", "validation loss"}


def test_every_long_phase_of_a_run_reports_k_of_n_and_writes_its_phase(tiny_model_dir, instance_dir,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "run"
    seen: list[ev.ProgressEvent] = []
    status_during: list[object] = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.ProgressEvent):
            seen.append(event)
            if event.phase == "class images" and not event.finished:
                status_during.append(RunDir(out).status().get("phase"))

    cfg = build_config(tiny_train_values(tiny_model_dir, out, instance_data_dir=str(instance_dir),
                                         instance_prompt="a sks shape", with_prior_preservation=True,
                                         class_data_dir=str(tmp_path / "class"), class_prompt="a shape",
                                         num_class_images=2, sample_batch_size=1, max_train_steps=2))
    run = train(cfg, on_event=on_event)
    by_phase: dict[str, list[ev.ProgressEvent]] = {}
    for event in seen:
        by_phase.setdefault(event.phase, []).append(event)
    assert PHASES <= set(by_phase), sorted(by_phase)
    for phase, events in by_phase.items():
        assert events[-1].finished, f"{phase} never reported its end"
        assert all(0 <= e.done <= e.total for e in events)
    images = by_phase["class images"]
    assert [e.total for e in images] == [2] * len(images) and images[-1].done == 2
    assert any(e.eta_seconds is not None for e in images)  # an ETA once there is a rate
    assert status_during and status_during[0]["phase"] == "class images"  # type: ignore[index]
    assert "phase" not in run.status() or run.status()["phase"] is None  # gone once the run has ended


def test_a_follower_reports_the_phase_a_detached_run_writes(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_config({"pretrained_model_name_or_path": "demo", "max_train_steps": 300}, {"version": "test"})
    run.write_status("running", 0, 300)
    follower = RunFollower(run.path)
    follower.poll()
    run.update_status(phase=ev.ProgressEvent("class images", 16, 64, "", 151.0).to_status())
    shown = [e for e in follower.poll() if isinstance(e, ev.ProgressEvent)]
    assert [e.line() for e in shown] == ["class images 16/64 · ETA 2:31"]
    run.update_status(phase=None)
    ended = [e for e in follower.poll() if isinstance(e, ev.ProgressEvent)]
    assert len(ended) == 1 and ended[0].finished and ended[0].phase == "class images"
