"""CI runs the training-speed benchmark in its tiny CPU mode: every row runs and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"


def test_train_speed_cpu_smoke_prints_every_row():
    done = subprocess.run([sys.executable, str(BENCH), "--cpu-smoke"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert rows[0]["header"]["device"] == "cpu"
    by_name = {r["row"]: r for r in rows[1:]}
    assert {"plain", "db-b1", "t2i-b1xga4", "sample-4x2"} <= set(by_name)
    for name in ("plain", "db-b1", "t2i-b1xga4"):
        assert by_name[name]["it_per_s"] > 0 and by_name[name]["unet_tflops"] > 0 and by_name[name]["steps"] == 4
    assert by_name["t2i-b1xga4"]["images_per_s"] > by_name["t2i-b1xga4"]["it_per_s"]  # 4 images per step
    assert "row" in done.stdout and "ms med" in done.stdout  # the table
