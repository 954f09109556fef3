"""How exact the demo masker is: IoU of its mask against the mask drawn from the scene itself, for
random shapes and colours of the demo world on a plain background and on busy ones (noise, stripes,
checks), and its speed.

    python benchmarks/demo_masker.py                  # 60 pictures per background, seed 0
    python benchmarks/demo_masker.py --pictures 200 --seed 3 --resolution 128

Busy backgrounds keep their stripe and check colours away from the subject's own colour (a stripe
of the subject's colour is part of the subject to any masker); noise is any colour.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pictures", type=int, default=60, help="pictures per background (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resolution", type=int, default=64)
    args = ap.parse_args(argv)

    import numpy as np

    from sdstudio.demo import busy
    from sdstudio.demo.masker import DemoMasker
    from sdstudio.demo.shapes import ALL_COLOURS, ALL_SHAPES, BACKGROUNDS, random_scene, render

    rng, masker, res = random.Random(args.seed), DemoMasker(), args.resolution
    print(f"{'background':<10} {'pictures':>8} {'mean IoU':>9} {'min IoU':>8} {'IoU<0.95':>9} {'images/s':>9}")
    for kind in ("plain",) + busy.KINDS:
        scores, seconds = [], 0.0
        for _ in range(args.pictures):
            colour, shape = rng.choice(list(ALL_COLOURS)), rng.choice(ALL_SHAPES)
            scene = random_scene(rng, colour, shape, rng.choice(list(BACKGROUNDS)), res)
            image = render(scene, res) if kind == "plain" else busy.render_on(
                scene, busy.busy_background(rng, res, kind, colour), res)
            start = time.perf_counter()
            got = np.asarray(masker.mask(image, f"the {colour} {shape}")) >= 128
            seconds += time.perf_counter() - start
            truth = busy.scene_mask(scene, res)
            scores.append(float((got & truth).sum() / max(1, (got | truth).sum())))
        print(f"{kind:<10} {len(scores):>8} {statistics.fmean(scores):>9.3f} {min(scores):>8.3f} "
              f"{sum(s < 0.95 for s in scores):>9} {len(scores) / seconds:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
