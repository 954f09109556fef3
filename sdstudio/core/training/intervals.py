"""How sure a score is: a percentile bootstrap interval of the mean over a step's samples.

A checkpoint's score is the mean of one number per validation sample (the demo judge's 0/1,
a CLIP cosine); with 4 samples a share moves in steps of 0.25, so two checkpoints whose
intervals overlap cannot be told apart by their samples. The bootstrap is seeded, so the same
samples always give the same interval (scores.jsonl does not change when nothing was added).

Why our own few lines: scipy.stats.bootstrap does this, but scipy is not a dependency, and
numpy's generator is all it needs.
"""

from __future__ import annotations

from collections.abc import Sequence

LEVEL = 0.95  # two-sided coverage of the interval
RESAMPLES = 2000
SEED = 0


def bootstrap_interval(values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES,
                       seed: int = SEED) -> tuple[float, float] | None:
    """(low, high) of the mean's percentile bootstrap interval; None for fewer than 2 samples
    (one sample says nothing about the spread)."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool | None:
    """Whether two intervals share a point; None when either is unknown."""
    if a is None or b is None:
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def format_interval(interval: tuple[float, float] | None) -> str:
    """` [0.25–1.00]`, or nothing when there is no interval."""
    return f" [{interval[0]:.2f}–{interval[1]:.2f}]" if interval is not None else ""
