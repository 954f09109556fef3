"""How long a stop takes on a shipped demo config with its defaults: from the request to the
trainer's exit, and what the run folder says afterwards.

    python benchmarks/stop_time.py                                  # text-to-image demo, SIGINT and `sdstudio stop`
    python benchmarks/stop_time.py --config data/configs/demo-dreambooth.toml --at 150 --how sigint

The stop is sent right after the step given by --at (a checkpoint step by default, the worst
case: the stop's checkpoint and the scheduled one coincide). Runs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _stop_once(config: str, at: int, how: str, root: Path) -> dict[str, object]:
    out = root / f"run-{how}"
    proc = subprocess.Popen([sys.executable, "-m", "sdstudio", "train", config, "--output_dir", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(f"step {at}/"):
            break
    else:
        raise SystemExit("the run ended before step %d:\n%s" % (at, "".join(lines)))
    t0 = time.monotonic()
    if how == "sigint":
        proc.send_signal(signal.SIGINT)
    else:
        subprocess.run([sys.executable, "-m", "sdstudio", "stop", str(out)], check=True, capture_output=True)
    rest, _ = proc.communicate(timeout=600)
    seconds = time.monotonic() - t0
    status = json.loads((out / "status.json").read_text())
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    return {"how": how, "seconds": seconds, "state": status.get("state"), "status_step": status.get("step"),
            "newest_checkpoint": ckpts[-1] if ckpts else None, "tail": rest.strip().splitlines()[-3:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="data/configs/demo-text2image.toml")
    ap.add_argument("--at", type=int, default=100, help="send the stop right after this step is printed")
    ap.add_argument("--how", choices=["sigint", "stop", "both"], default="both")
    args = ap.parse_args(argv)
    hows = ["sigint", "stop"] if args.how == "both" else [args.how]
    with tempfile.TemporaryDirectory() as tmp:
        for how in hows:
            r = _stop_once(args.config, args.at, how, Path(tmp))
            what = "SIGINT" if how == "sigint" else "`sdstudio stop RUN`"
            print(f"{Path(args.config).name}: {what} after step {args.at}: exited {r['seconds']:.2f} s later; "
                  f"status {r['state']} at step {r['status_step']}, newest checkpoint {r['newest_checkpoint']}")
            for line in r["tail"]:  # type: ignore[union-attr]
                print("    " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
