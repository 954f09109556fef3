"""Which checkpoint to take, by one rule, with the reason in words.

The rule (also in the README, "Which checkpoint is best"):

    1. Candidates are the saved checkpoints (step > 0), less those after the validation
       loss's minimum whose loss has risen past (1 + recommend_loss_tolerance) x that minimum
       (a rising held-out loss means overfitting).
    2. Each candidate's subject and prompt fidelity are averaged with its neighbouring
       checkpoints', weighted 1-2-1: a few samples per step are noisy.
    3. Keep the candidates whose subject fidelity is within recommend_subject_tolerance
       (a share) of the best one: they have learned the subject.
    4. Of those, take the one with the best prompt fidelity (it has drifted least from the
       base model). Prompt fidelities within PROMPT_TIE (5 %) of the best are a tie, which
       goes to the later step: it has seen more of the subject, and no drift was measured.
    Text-to-image has no subject: step 3 keeps every candidate.
    5. Every score has an interval (a bootstrap over its samples, intervals.py). A candidate whose
       subject and prompt intervals both overlap the pick's is "not distinguishable" from it: the
       samples cannot tell them apart, and `sdstudio score --more-seeds K` samples these
       contenders again (more_seeds.py). The reason names them.

Why this rule: training longer teaches the subject, then costs prompt fidelity (the "later
checkpoints draw everything as the subject" drift). So among the checkpoints that learned the
subject, the least drifted is the one to take; where the samples cannot tell them apart, the
later one, since a few samples per step cannot see a small difference in subject fidelity. Defaults: 10 % and 10 %. A missing
number (no validation loss, no ordinary prompt) excludes nothing. Scores come from
`scoring.ScoreRow`s; nothing here loads a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sdstudio.core.training.intervals import format_interval, overlap
from sdstudio.core.training.scorers import LABELS

PROMPT_TIE = 0.05  # prompt fidelities this close (a share of the best) are a tie: the later step takes it
SUBJECT_ORDER = ("dino", "clip", "demo")  # which scorer's subject fidelity counts when several ran
PROMPT_ORDER = ("clip", "demo")


@dataclass(frozen=True)
class Recommendation:
    step: int | None
    reason: str
    subject_metric: str | None = None
    prompt_metric: str | None = None
    contenders: list[int] = field(default_factory=list)  # steps not distinguishable from `step`

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pick_metric(rows: list[Any], role: str, order: tuple[str, ...]) -> str | None:
    """The first scorer in `order` whose `role` number appears in the rows."""
    present = {k for r in rows for k in r.scores}
    return next((f"{s}_{role}" for s in order if f"{s}_{role}" in present), None)


def _pct(value: float, base: float) -> str:
    return f"{(value - base) / abs(base) * 100:+.0f} %" if base else f"{value - base:+.2f}"


def recommend(rows: list[Any], subject_tolerance: float = 0.10, loss_tolerance: float = 0.10) -> Recommendation:
    """Apply the rule to score rows (each with .step, .checkpoint, .val_loss, .scores)."""
    subject = pick_metric(rows, "subject", SUBJECT_ORDER)
    prompt = pick_metric(rows, "prompt", PROMPT_ORDER)
    if subject is None and prompt is None:
        return Recommendation(None, "no scores yet: run `sdstudio score RUN_DIR`")
    base = next((r for r in rows if r.step == 0), None)
    base_prompt = base.scores.get(prompt) if base is not None and prompt else None
    scored = [r for r in rows if r.step > 0 and r.checkpoint and (subject or prompt) in r.scores]
    if not scored:
        return Recommendation(None, "no scored checkpoint yet", subject, prompt)
    cands = [_Smoothed(r, subject, prompt, _window(scored, i, subject), _window(scored, i, prompt))
             for i, r in enumerate(scored)]
    losses = [r for r in cands if r.val_loss is not None]
    lowest = min(losses, key=lambda r: r.val_loss) if losses else None
    min_loss = lowest.val_loss if lowest is not None else None
    overfit = [r for r in losses if lowest is not None and r.step > lowest.step
               and r.val_loss > min_loss + loss_tolerance * abs(min_loss)]  # type: ignore[operator]
    pool = [r for r in cands if r not in overfit] or cands
    best_subject = max((r.subject for r in pool if r.subject is not None), default=None)
    learned = [r for r in pool if best_subject is None or r.subject is None
               or r.subject >= best_subject - subject_tolerance * abs(best_subject)]
    top_prompt = max((r.prompt for r in learned if r.prompt is not None), default=None)
    near = [r for r in learned if top_prompt is None or r.prompt is None
            or r.prompt >= top_prompt - PROMPT_TIE * abs(top_prompt)]
    pick = max(near, key=lambda r: r.step)
    labels = (LABELS.get(subject or "", "subject"), LABELS.get(prompt or "", "prompt fidelity"))
    reason = _reason(pick, cands, learned, overfit, best_subject, base_prompt, min_loss, labels, subject_tolerance)
    tied = [r.step for r in near if r.step < pick.step and r.prompt is not None]
    if tied:
        reason += (f"; {labels[1]} ties with step{'s' if len(tied) > 1 else ''} {', '.join(map(str, tied))} "
                   f"(within {PROMPT_TIE * 100:.0f} %): the later step is taken")
    contenders = [r.step for r in pool if r is not pick and _overlaps(r, pick)]
    if contenders:
        reason = _not_distinguishable(reason, contenders)
    return Recommendation(pick.step, reason, subject, prompt, contenders)


def _overlaps(a: Any, b: Any) -> bool:
    """Whether the samples cannot tell a from b: every interval both have overlaps (at least one)."""
    found = [overlap(x, y) for x, y in ((a.subject_iv, b.subject_iv), (a.prompt_iv, b.prompt_iv))]
    known = [f for f in found if f is not None]
    return bool(known) and all(known)


def _not_distinguishable(reason: str, steps: list[int]) -> str:
    """The reason with "not distinguishable" right after the picked step, so that a short panel
    (the Checkpoints screen's) shows it first."""
    step, sep, rest = reason.partition(":")
    plural = "s" if len(steps) > 1 else ""
    note = f", not distinguishable from step{plural} {', '.join(map(str, steps))} (intervals overlap)"
    return f"{step}{note}{sep}{rest}"


def _reason(pick: Any, cands: list[Any], learned: list[Any], overfit: list[Any], best_subject: float | None,
            base_prompt: float | None, min_loss: float | None, labels: tuple[str, str], tolerance: float) -> str:
    subject_name, prompt_name = labels
    head = f"step {pick.step}"
    if pick.own_subject is not None and best_subject is not None:
        head += f": {subject_name} {pick.own_subject:.2f}{format_interval(pick.subject_iv)}"
        if pick.subject >= best_subject:
            head += " (best)"
        else:
            top = max((r for r in learned if r.subject is not None), key=lambda r: r.subject)
            head += (f" (averaged with its neighbours {pick.subject:.2f}, within {tolerance * 100:.0f} % of the best, "
                     f"{top.subject:.2f} at {top.step})")
    parts = [head]
    if pick.own_prompt is not None:
        vs = f", {_pct(pick.own_prompt, base_prompt)} vs base" if base_prompt is not None else ""
        parts.append(f"{prompt_name} {pick.own_prompt:.2f}{format_interval(pick.prompt_iv)}{vs}")
    later = [r for r in cands if r.step > pick.step and r.own_prompt is not None]
    if later and pick.prompt is not None:
        worst = min(later, key=lambda r: r.own_prompt)
        if worst.own_prompt < (pick.own_prompt or 0.0):
            drop = _pct(worst.own_prompt, base_prompt) if base_prompt is not None else f"{worst.own_prompt:.2f}"
            parts.append(f"later steps lose {prompt_name} ({drop} at {worst.step})")
    earlier = [r for r in cands if r.step < pick.step and r not in learned and r.own_subject is not None]
    if earlier:
        parts.append(f"earlier steps had not learned the subject ({earlier[-1].own_subject:.2f} at {earlier[-1].step})")
    if pick.val_loss is not None and min_loss is not None:
        parts.append(f"validation loss {pick.val_loss:.4f} (lowest {min_loss:.4f})")
    if overfit:
        parts.append(f"validation loss rose past its minimum at step{'s' if len(overfit) > 1 else ''} "
                     f"{', '.join(str(r.step) for r in overfit)}")
    if len(cands) > 1:
        parts.append("ranked on scores averaged 1-2-1 with the neighbouring checkpoints")
    return "; ".join(parts)


def _window(rows: list[Any], i: int, metric: str | None) -> float | None:
    """`metric` at row i averaged with its neighbours, weighted 1-2-1 (those that have it)."""
    if metric is None or metric not in rows[i].scores:
        return None
    pairs = [(rows[j].scores[metric], 2 if j == i else 1) for j in (i - 1, i, i + 1)
             if 0 <= j < len(rows) and metric in rows[j].scores]
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs)


class _Smoothed:
    """A score row seen through the window: smoothed `subject` and `prompt` numbers, and the row's
    own numbers and intervals of the metrics that count (not another scorer's)."""

    def __init__(self, row: Any, subject_metric: str | None, prompt_metric: str | None,
                 subject: float | None, prompt: float | None) -> None:
        self.step, self.val_loss = row.step, row.val_loss
        self.subject, self.prompt = subject, prompt
        self.own_subject = row.scores.get(subject_metric) if subject_metric else None
        self.own_prompt = row.scores.get(prompt_metric) if prompt_metric else None
        intervals = getattr(row, "intervals", {})
        self.subject_iv = intervals.get(subject_metric) if self.own_subject is not None else None
        self.prompt_iv = intervals.get(prompt_metric) if self.own_prompt is not None else None
