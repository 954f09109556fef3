"""Key press to repaint in the studio while a training run is going (goal: <= 100 ms on 2 cores).

    python benchmarks/tui_latency.py [--presses 20] [--threads N] [--sizes 80x24,120x40]

Builds the tiny random-weight model in a temporary folder, starts a long run from the Train
screen (the real trainer, in the App's worker thread), opens a run of 6 steps x 8 samples
(48 thumbnails, pictures from the sample data) on the Checkpoints screen while that training
goes on, then presses keys headlessly at each terminal size: `3`/`2` (switch Train <-> Checkpoints), `j`/`k` (move
between steps) and `l`/`h` (move between samples, paging the columns). Each figure is the wall
time from posting the key to the end of the first compositor update that shows its effect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SDSTUDIO_IMAGES", "halfcell")


def _setup(tmp: Path) -> Path:
    from PIL import Image

    from sdstudio.core.paths import data_dir
    from sdstudio.demo.tiny import build_tiny_pipeline

    model = build_tiny_pipeline(tmp / "tiny", seed=0)
    data = tmp / "data"
    data.mkdir()
    rows = [json.loads(x) for x in (data_dir() / "shapes" / "metadata.jsonl").read_text().splitlines()[:8]]
    for row in rows:
        Image.open(data_dir() / "shapes" / row["file_name"]).convert("RGB").resize((32, 32)).save(data / row["file_name"])
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp / "train.toml").write_text(
        f'pretrained_model_name_or_path = "{model}"\ntrain_data_dir = "{data}"\nresolution = 32\n'
        'max_train_steps = 100000\nvalidation_steps = 25\ncheckpointing_steps = 25\nnum_validation_images = 1\n'
        'validation_num_inference_steps = 2\nvalidation_prompts = ["a red circle", "a blue square"]\n')
    _sheet_run(Path(os.environ["SDSTUDIO_RUNS"]) / "sheet-48")
    settings = tmp / "config.toml"
    settings.write_text('train_config = "train.toml"\n')
    return settings


def _sheet_run(folder: Path) -> None:
    """A finished run with 6 steps x (2 prompts x 4 seeds) = 48 samples: the contact sheet to move in."""
    from PIL import Image

    from sdstudio.core.paths import data_dir
    from sdstudio.core.runs.run_dir import RunDir

    pictures = sorted((data_dir() / "shapes").glob("*.png"))
    run = RunDir(folder)
    run.write_config({"pretrained_model_name_or_path": "demo", "max_train_steps": 50}, {"version": "bench"})
    for r, step in enumerate(range(0, 60, 10)):
        for p, prompt in enumerate(("a red circle", "a blue square")):
            for seed in range(4):
                picture = pictures[(r * 8 + p * 4 + seed) % len(pictures)]
                run.add_sample(step, p, prompt, seed, Image.open(picture).convert("RGB"))
    run.write_status("finished", 50, 50)


def _summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return f"{name}: median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, max {ms[-1]:.1f} ms ({len(ms)} presses)"


async def _measure(settings_path: Path, presses: int, size: tuple[int, int]) -> dict[str, list[float]]:
    from sdstudio.tui.app import StudioApp
    from sdstudio.tui.settings import load_settings

    paints: list[float] = []

    class TimedApp(StudioApp):
        def _display(self, screen: Any, renderable: Any) -> None:
            super()._display(screen, renderable)
            if renderable is not None:
                paints.append(time.perf_counter())

    async def press_until(app: Any, key: str, done: Any) -> float:
        t0 = time.perf_counter()
        app.simulate_key(key)
        while not done():
            await asyncio.sleep(0.001)
        t_done = time.perf_counter()
        while not paints or paints[-1] < t_done:
            await asyncio.sleep(0.001)
        return next(p for p in paints if p >= t_done) - t0

    os.environ["SDSTUDIO_CONFIG"] = str(settings_path)
    app = TimedApp(settings=load_settings())
    results: dict[str, list[float]] = {"switch screen (2/3)": [], "move in grid (j/k)": [],
                                       "move in grid (l/h)": []}
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        deadline = time.monotonic() + 600
        while app.session.step < 30:  # past the first samples and checkpoint
            if time.monotonic() > deadline or app.session.state == "failed":
                raise SystemExit(f"training did not get going: {app.session.state} {app.session.error}")
            await asyncio.sleep(0.2)
        await pilot.press("3")
        await pilot.pause(0.5)
        from sdstudio.core.runs.run_dir import RunDir

        app.screen.open(RunDir(Path(os.environ["SDSTUDIO_RUNS"]) / "sheet-48"))  # the 48 thumbnails
        await pilot.pause(1.0)
        await pilot.press("2")
        await pilot.pause(0.5)
        for i in range(presses):
            target = "checkpoints" if i % 2 == 0 else "train"
            results["switch screen (2/3)"].append(
                await press_until(app, "3" if target == "checkpoints" else "2", lambda t=target: app.current_mode == t))
            await asyncio.sleep(0.2)
        await pilot.press("3")
        await pilot.pause(0.5)
        screen = app.screen
        for i in range(presses):
            before = screen.query_one("#grid").cursor[0]
            key = "k" if i % 2 == 0 else "j"
            results["move in grid (j/k)"].append(
                await press_until(app, key, lambda b=before: screen.query_one("#grid").cursor[0] != b))
            await asyncio.sleep(0.2)
        for i in range(presses):
            before = screen.query_one("#grid").cursor[1]
            key = "l" if (i // 4) % 2 == 0 else "h"  # four right, four left: pages the columns
            results["move in grid (l/h)"].append(
                await press_until(app, key, lambda b=before: screen.query_one("#grid").cursor[1] != b))
            await asyncio.sleep(0.2)
        thumbs = sum(1 for r in screen.query_one("#grid").rows for p in r.paths if p is not None)
        print(f"{size[0]}x{size[1]}: contact sheet of {thumbs} thumbnails, {screen.query_one('#grid').hint}")
        steps = app.session.step
        app.session.request_stop()
        while app.session.busy:
            await asyncio.sleep(0.1)
    print(f"training ran during the measurement: reached step {steps}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the trainer (default: torch's)")
    parser.add_argument("--sizes", default="80x24,120x40", help="terminal sizes, comma-separated")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    for text in args.sizes.split(","):
        size = tuple(int(v) for v in text.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["SDSTUDIO_RUNS"] = str(Path(tmp) / "runs")
            settings = _setup(Path(tmp))
            results = asyncio.run(_measure(settings, args.presses, size))  # type: ignore[arg-type]
        print(f"{text}: cpus: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, load average: "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        for name, values in results.items():
            print(f"{text} {_summary(name, values)}")


if __name__ == "__main__":
    main()
