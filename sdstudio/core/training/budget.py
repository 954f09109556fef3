"""Where a run's wall time goes: training steps, and the optional work beside them (validation
samples, validation loss, image scores).

Optional work is worth its cost only while it stays a minor share of the run, so the share is
measured in every run, printed at its end and kept in status.json (`timing`); the shipped demo
configs aim at 25 % at most (benchmarks/optional_share.py prints it for each).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunClock:
    """Seconds spent by the trainer itself (the review keeps the validation loss's and the scorer's)."""

    train_s: float = 0.0
    sampling_s: float = 0.0

    def timing(self, val_loss_s: float, scores_s: float) -> dict[str, float]:
        """status.json's `timing`: each part, the optional total, and its share of the run."""
        parts = {"train_s": self.train_s, "sampling_s": self.sampling_s, "val_loss_s": val_loss_s, "scores_s": scores_s}
        optional = self.sampling_s + val_loss_s + scores_s
        total = self.train_s + optional
        return {**{k: round(v, 3) for k, v in parts.items()}, "optional_s": round(optional, 3),
                "optional_share": round(optional / total, 4) if total else 0.0}


def timing_line(t: dict[str, float]) -> str:
    """The log line at the end of a run."""
    return (f"optional work {t['optional_s']:.1f} s = {t['optional_share']:.0%} of the run (sampling "
            f"{t['sampling_s']:.1f} s, validation loss {t['val_loss_s']:.1f} s, scores {t['scores_s']:.1f} s; "
            f"training steps {t['train_s']:.1f} s)")
