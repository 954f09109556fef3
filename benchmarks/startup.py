"""Time from `sdstudio` process start to the first painted screen, and what was imported by then.

    python benchmarks/startup.py [--runs 5] [--size 80x24]

Each run is a fresh interpreter (as a user typing `sdstudio` gets), headless, with an empty
runs folder; the figure is wall time from spawning the process to the end of the first
refresh of the Train screen. Goal: <= 0.5 s, with torch/diffusers not imported yet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import os, sys, time, json
t0 = float(os.environ["SDSTUDIO_BENCH_T0"])
from sdstudio.tui import images
from sdstudio.tui.app import StudioApp
from sdstudio.tui.settings import load_settings
images.init_images(images.choose_renderer(None, None))
w, h = (int(v) for v in os.environ["SDSTUDIO_BENCH_SIZE"].split("x"))
result = {}

async def first_paint(pilot):
    await pilot.pause()  # mount + first refresh done
    result["seconds"] = time.time() - t0
    result["cpu"] = time.process_time()  # CPU seconds of this process so far: less sensitive to a busy machine
    result["heavy"] = sorted(m for m in ("torch", "diffusers", "transformers", "accelerate", "peft") if m in sys.modules)
    result["screen"] = type(pilot.app.screen).__name__
    pilot.app.exit()

app = StudioApp(settings=load_settings())
app.run(headless=True, size=(w, h), auto_pilot=first_paint)
print(json.dumps(result))
"""


def one_run(size: str, runs_dir: str) -> dict:
    env = dict(os.environ, SDSTUDIO_BENCH_SIZE=size, SDSTUDIO_RUNS=runs_dir,
               SDSTUDIO_CONFIG=os.path.join(runs_dir, "no-config.toml"))
    env["SDSTUDIO_BENCH_T0"] = repr(time.time())
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="80x24")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one_run(args.size, tmp)  # warm the OS file cache (.pyc files), as a second launch would be
        results = [one_run(args.size, tmp) for _ in range(args.runs)]
    secs = [r["seconds"] for r in results]
    print(f"first paint ({results[0]['screen']}, {args.size}, {args.runs} runs): "
          f"median {statistics.median(secs):.3f} s, min {min(secs):.3f} s, max {max(secs):.3f} s")
    cpu = [r["cpu"] for r in results]
    print(f"CPU time of the process to first paint: median {statistics.median(cpu):.3f} s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    heavy = sorted({m for r in results for m in r["heavy"]})
    print(f"heavy modules imported before first paint: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
