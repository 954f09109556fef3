"""CI runs the training-speed benchmark in its tiny CPU mode: every row runs the configuration its
name says, trains (finite losses, every step timed) and reports a FLOP count that is plausible."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"


def _unet_weight_count(model_dir: Path) -> int:
    """Elements of the UNet's linear and conv weights (tensors of 2 or more dimensions)."""
    from safetensors import safe_open

    with safe_open(str(model_dir / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as fh:
        return sum(math.prod(shape) for k in fh.keys() if len(shape := fh.get_slice(k).get_shape()) >= 2)


def test_train_speed_cpu_smoke_prints_every_row(tiny_model_dir: Path):
    done = subprocess.run([sys.executable, str(BENCH), "--cpu-smoke"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert rows[0]["header"]["device"] == "cpu"
    by_name = {r["row"]: r for r in rows[1:]}
    assert {"plain", "db-b1", "t2i-b1xga4", "sample-4x2"} <= set(by_name)
    # each row ran what its name says
    assert by_name["plain"]["fast_path"] is False and by_name["db-b1"]["fast_path"] is True
    assert (by_name["t2i-b1xga4"]["batch"], by_name["t2i-b1xga4"]["grad_accum"]) == (1, 4)
    # every row trained: 1 warm-up + 3 timed optimizer steps, a finite loss at the end
    # Each weight of the UNet (the benchmark's tiny model has the test model's architecture) takes
    # part in at least one multiply-add forward and one backward (input gradients): 4 FLOPs each.
    floor = 4 * _unet_weight_count(tiny_model_dir)
    for name in ("plain", "db-b1", "t2i-b1xga4"):
        row = by_name[name]
        assert row["steps"] == 4 and row["it_per_s"] > 0, name
        assert math.isfinite(row["final_loss"]) and row["final_loss"] > 0, name
        assert row["unet_flop_per_image"] >= floor, (name, row["unet_flop_per_image"], floor)
    assert by_name["sample-4x2"]["seconds_median"] > 0
    assert "row" in done.stdout and "ms med" in done.stdout  # the table
