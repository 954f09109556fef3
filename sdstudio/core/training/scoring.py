"""Score a run's checkpoints from the validation samples it already made, into `<run>/scores.jsonl`.

One row per scored step (step 0 is the base model, then every checkpoint that has samples):
its validation loss (from metrics.jsonl), the scorers' numbers with their intervals (a seeded
bootstrap over the samples, intervals.py), their cost in seconds; the last line is the
recommendation (recommend.py). The file is rewritten atomically, so the
TUI, the CLI and another SSH session always read a whole table. Scoring is incremental: a
step already scored by a scorer is not scored again unless asked, or unless the step has gained
samples (`sdstudio score --more-seeds`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sdstudio.core.runs.run_dir import RunDir
from sdstudio.core.training.intervals import bootstrap_interval
from sdstudio.core.training.recommend import Recommendation, recommend
from sdstudio.core.training.scorers import Scorer, make_scorer, split_samples

MAX_REFERENCES = 64  # text-to-image sets can be large; the nearest-image check uses the first 64


@dataclass
class ScoreRow:
    step: int
    checkpoint: bool
    val_loss: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # scoring cost per scorer
    images: int = 0
    # per score: (low, high) of its bootstrap interval; None where one sample gave the score
    intervals: dict[str, tuple[float, float] | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "checkpoint": self.checkpoint, "val_loss": self.val_loss, "scores": self.scores,
                "intervals": {k: list(v) if v is not None else None for k, v in self.intervals.items()},
                "seconds": self.seconds, "images": self.images}


@dataclass
class ScoreTable:
    rows: list[ScoreRow]
    recommendation: Recommendation | None = None

    def row(self, step: int) -> ScoreRow | None:
        return next((r for r in self.rows if r.step == step), None)

    def metrics(self) -> list[str]:
        """Score names present, in a stable order."""
        from sdstudio.core.training.scorers import LABELS

        present = {k for r in self.rows for k in r.scores}
        return [k for k in LABELS if k in present] + sorted(present - set(LABELS))


def read_scores(run: RunDir) -> ScoreTable:
    """What scores.jsonl holds (an empty table when there is none; torn lines are skipped)."""
    rows: list[ScoreRow] = []
    rec = None
    try:
        lines = run.scores_jsonl.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            data = json.loads(line)
            if "recommendation" in data:
                rec = Recommendation(**data["recommendation"])
            else:
                rows.append(ScoreRow(int(data["step"]), bool(data.get("checkpoint")), data.get("val_loss"),
                                     {k: float(v) for k, v in data.get("scores", {}).items()},
                                     {k: float(v) for k, v in data.get("seconds", {}).items()}, int(data.get("images", 0)),
                                     {k: (float(v[0]), float(v[1])) if v is not None else None
                                      for k, v in data.get("intervals", {}).items()}))
        except (ValueError, TypeError, KeyError):
            continue
    return ScoreTable(sorted(rows, key=lambda r: r.step), rec)


def write_scores(run: RunDir, table: ScoreTable) -> None:
    from sdstudio.core.io import atomic

    lines = [json.dumps(r.to_json(), sort_keys=True) for r in table.rows]
    if table.recommendation is not None:
        lines.append(json.dumps({"recommendation": table.recommendation.to_json()}, sort_keys=True))
    atomic.write_text(run.scores_jsonl, "".join(line + "\n" for line in lines))


def recommended_step(run_dir: str | Path, step: int | None = None) -> tuple[int, str]:
    """(step, reason) of the checkpoint scores.jsonl recommends (`export --best`); errors say how to get one."""
    from sdstudio.core.errors import SdstudioError

    if step is not None:
        raise SdstudioError("--best and --step both pick the checkpoint; give one of them")
    run = RunDir(run_dir)
    if not run.exists():
        raise SdstudioError(f"{run_dir}: --best needs a run folder (no run.toml here)")
    rec = read_scores(run).recommendation
    if rec is None or rec.step is None:
        raise SdstudioError(f"{run.path}: no recommended checkpoint yet; run `sdstudio score {run.path}` first")
    if rec.step not in {c.step for c in run.checkpoints()}:  # a LoRA file or a full fine-tune's folders
        raise SdstudioError(f"{run.path}: the recommended step {rec.step} has no checkpoint any more; "
                            f"run `sdstudio score {run.path}` again")
    return rec.step, rec.reason


def references(config: dict[str, Any]) -> list[Any]:
    """The training images as the model saw them (centre crop at the run's resolution)."""
    from sdstudio.core.dataset import check_dataset, load_rgb, preprocess

    folder = config.get("instance_data_dir") or config.get("train_data_dir")
    if not folder or not Path(folder).is_dir():
        return []
    dreambooth = bool(config.get("instance_data_dir"))
    report = check_dataset(folder, captions=not dreambooth, caption_column=config.get("caption_column", "text")) \
        if not dreambooth else check_dataset(folder, captions=False)
    files = [f for f in report.files if f.usable][:MAX_REFERENCES]
    return [preprocess(load_rgb(Path(folder) / f.name), int(config.get("resolution", 512)), True) for f in files]


def _samples_by_step(run: RunDir) -> dict[int, list[tuple[str, Path]]]:
    out: dict[int, list[tuple[str, Path]]] = {}
    for s in run.samples():
        out.setdefault(s.step, []).append((s.prompt, s.path))
    return out


class RunScorer:
    """Scorers (models loaded once) and the run's references; `score()` brings scores.jsonl up to date."""

    def __init__(self, run: RunDir, names: list[str], clip_model: str | None = None, dino_model: str | None = None,
                 config: dict[str, Any] | None = None) -> None:
        from sdstudio.core.config import TrainConfig

        self.run = run
        self.config = config if config is not None else run.config()
        defaults = TrainConfig()
        t0 = time.perf_counter()
        self.scorers: list[Scorer] = [
            make_scorer(n, clip_model or self.config.get("clip_model", defaults.clip_model),
                        dino_model or self.config.get("dino_model", defaults.dino_model)) for n in names]
        self.load_seconds = time.perf_counter() - t0
        self.references = references(self.config)
        self.subject_tolerance = float(self.config.get("recommend_subject_tolerance", defaults.recommend_subject_tolerance))
        self.loss_tolerance = float(self.config.get("recommend_loss_tolerance", defaults.recommend_loss_tolerance))

    def score(self, rescore: bool = False) -> ScoreTable:
        from PIL import Image

        run = self.run
        old = {r.step: r for r in read_scores(run).rows}
        ckpts = {c.step for c in run.checkpoints()}
        losses = run.validation_losses()
        instance_prompt = self.config.get("instance_prompt") if self.config.get("instance_data_dir") else None
        rows = []
        for step, files in sorted(_samples_by_step(run).items()):
            if step != 0 and step not in ckpts and step not in old:
                continue
            row = old.get(step) or ScoreRow(step, step in ckpts)
            grown = row.images != len(files)  # new samples (score --more-seeds): every scorer again
            row.checkpoint, row.val_loss, row.images = step in ckpts, losses.get(step, row.val_loss), len(files)
            todo = [s for s in self.scorers if rescore or grown or s.name not in row.seconds
                    or any(k.startswith(s.name + "_") and k not in row.intervals for k in row.scores)]
            if todo:
                samples = split_samples([(p, Image.open(f).convert("RGB")) for p, f in files], instance_prompt)
                for scorer in todo:
                    t0 = time.perf_counter()
                    found = scorer.values(samples, self.references)
                    mine = scorer.name + "_"
                    row.scores = {k: v for k, v in row.scores.items() if not k.startswith(mine)}
                    row.intervals = {k: v for k, v in row.intervals.items() if not k.startswith(mine)}
                    for role, values in found.items():
                        if not values:
                            continue
                        row.scores[mine + role] = sum(values) / len(values)
                        row.intervals[mine + role] = bootstrap_interval(values)
                    row.seconds[scorer.name] = time.perf_counter() - t0
            rows.append(row)
        table = ScoreTable(rows)
        table.recommendation = recommend(rows, self.subject_tolerance, self.loss_tolerance)
        write_scores(run, table)
        return table


class BackgroundScorer:
    """Scores in one background thread while training goes on (off the step's critical path).

    Each `submit` brings scores.jsonl up to date; a failure is logged, never raised into training.
    """

    def __init__(self, run: RunDir, cfg: Any, log: Callable[..., None]) -> None:
        self.run, self.cfg, self.log = run, cfg, log
        self._jobs: queue.Queue[int | None] = queue.Queue()
        self._scorer: RunScorer | None = None
        self.seconds = 0.0  # spent scoring (the run's optional-work share counts it)
        self._thread = threading.Thread(target=self._work, name="sdstudio-scorer", daemon=True)
        self._thread.start()

    def submit(self, step: int) -> None:
        self._jobs.put(step)

    def close(self, wait: bool = True) -> None:
        """No more jobs; with wait=False (a stop) the thread ends after its current job, unwaited."""
        self._jobs.put(None)
        if wait:
            self._thread.join()

    def _work(self) -> None:
        broken = False
        while (step := self._jobs.get()) is not None:
            if broken:
                continue
            try:
                if self._scorer is None:
                    try:
                        self._scorer = RunScorer(self.run, list(self.cfg.scorers), self.cfg.clip_model,
                                                 self.cfg.dino_model, self.cfg.to_dict())
                    except Exception as exc:  # noqa: BLE001 - a missing scorer model must not stop training
                        broken = True
                        self.log(f"scoring is off for this run: {exc}; score later with `sdstudio score {self.run.path}`",
                                 "warning")
                        continue
                t0 = time.perf_counter()
                table = self._scorer.score()
                rec = table.recommendation
                self.seconds += time.perf_counter() - t0
                self.log(f"scores up to step {step} ({time.perf_counter() - t0:.2f} s)"
                         + (f"; recommended: {rec.reason}" if rec and rec.step is not None else ""))
            except Exception as exc:  # noqa: BLE001 - scoring must never stop a training
                self.log(f"scoring failed at step {step}: {exc}", "warning")
