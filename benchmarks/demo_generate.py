"""Time one 4-image batch of the demo model with its recommended sampler settings.

    python benchmarks/demo_generate.py               # 2 threads (the target: <= 2 s on 2 CPU cores)
    python benchmarks/demo_generate.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    from sdstudio.demo import evaluation as demo_eval
    from sdstudio.core.models import load_pipeline

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    pipe = load_pipeline(args.model)
    print(f"load: {time.perf_counter() - t0:.2f}s")
    prompt = ["a red circle on a white background"]
    demo_eval.sample(pipe, prompt, [0])  # warm-up
    times = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        demo_eval.sample(pipe, prompt, [4 * r + i for i in range(4)])
        times.append(time.perf_counter() - t0)
    print(f"4 images, {demo_eval.DEMO_STEPS} steps, guidance {demo_eval.DEMO_GUIDANCE}, {args.threads} threads: "
          f"median {statistics.median(times):.2f}s (min {min(times):.2f}s, runs {', '.join(f'{t:.2f}' for t in times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
