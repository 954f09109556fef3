"""Optional work's share of a run, for each shipped demo config with its defaults: the seconds of
training steps, of optional work (validation samples, validation loss, image scores), and the share
of optional work in the two together, as the trainer records it (status.json `timing`). The
shipped demo configs aim at a share of at most 25 %; run this on otherwise idle cores (on a
loaded box sampling slows down more than training steps do).

    python benchmarks/optional_share.py                     # every data/configs/demo-*.toml
    python benchmarks/optional_share.py --config data/configs/demo-dreambooth.toml

Each run trains in a subprocess into a temporary folder (the prior-preservation demo makes its
class images once, under models/.class-images, before its first run: not counted).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SHARE = 0.25


def measure(config: Path, out: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sdstudio", "train", str(config), "--quiet", "--output_dir", str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{config}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    timing = json.loads((out / "status.json").read_text())["timing"]
    return {**timing, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", action="append", help="a config (repeatable); default: every demo config")
    args = ap.parse_args(argv)
    configs = [Path(c) for c in args.config] if args.config else sorted(Path("data/configs").glob("demo-*.toml"))
    print(f"{'config':28} {'train s':>8} {'optional s':>10} {'sampling':>9} {'val loss':>9} {'scores':>7} "
          f"{'share':>6} {'wall s':>7}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            t = measure(config, Path(tmp) / config.stem)
            worst = max(worst, t["optional_share"])
            print(f"{config.name:28} {t['train_s']:8.1f} {t['optional_s']:10.1f} {t['sampling_s']:9.1f} "
                  f"{t['val_loss_s']:9.1f} {t['scores_s']:7.1f} {t['optional_share']:6.0%} {t['wall_s']:7.1f}",
                  flush=True)
    print(f"largest share {worst:.0%} (target: at most {TARGET_SHARE:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
