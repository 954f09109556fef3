"""What the trainer does after a checkpoint: the validation loss, then (optionally) image scores.

An object the trainer holds, so its loop carries only one-line hooks: `hold_out` in setup,
`prepare` once the models are loaded, `after_save` after a checkpoint, `after_samples` after
samples are written, `defer` for a stop's checkpoint, `measure_pending` on resume, `close` at
the end (or `abandon` at a stop: a stop never waits for optional work).

The validation loss has a budget: after the first evaluation, a checkpoint's is skipped (and
left pending for `sdstudio score`) when it would bring the validation loss's seconds above
`validation_loss_max_share` of the training steps' seconds (plus ALLOWANCE_S, so a few seconds
in all are never thinned). A stop during an evaluation abandons it (pending too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.events import Event, ValidationLossEvent
from sdstudio.core.training.examples import Example
from sdstudio.core.training.validation_loss import HeldOut, ValidationLoss, ValidationResult, split_examples

ALLOWANCE_S = 10.0  # validation-loss seconds (in all) that are never thinned, whatever the share


class CheckpointReview:
    """The validation loss at every checkpoint and the background image scorer of one run."""

    def __init__(self, cfg: TrainConfig, log: Callable[..., None], emit: Callable[[Event], None]) -> None:
        self.cfg = cfg
        self.log = log
        self.emit = emit
        self.held: HeldOut | None = None
        self.val_loss: ValidationLoss | None = None
        self.scorer: Any = None  # scoring.BackgroundScorer, started with the first samples
        self.val_seconds = 0.0  # spent on the validation loss in this process
        self._last_val_seconds = 0.0
        self._scores_before = 0.0  # scoring seconds of scorers already closed

    def hold_out(self, examples: list[Example]) -> list[Example]:
        """Setup: returns the examples to train on; remembers the held-out set."""
        if not self.cfg.validation_loss:
            return examples
        train, self.held = split_examples(self.cfg, examples)
        self.log(self.held.note)
        return train

    def prepare(self, models: Any, is_main: bool) -> None:
        """After the models load: encode the held-out images once (frozen modules on the device)."""
        if self.held is None or not is_main:
            return
        with models.sampling_pipeline() as pipe:
            self.val_loss = ValidationLoss(self.cfg, self.held, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                                           models.noise_scheduler, models.device, getattr(pipe, "text_encoder_2", None),
                                           getattr(pipe, "tokenizer_2", None))

    @property
    def scores_seconds(self) -> float:
        return self._scores_before + (self.scorer.seconds if self.scorer is not None else 0.0)

    def after_save(self, step: int, models: Any, run_dir: Any, accelerator: Any, train_seconds: float,
                   should_stop: Callable[[], bool]) -> None:
        """After a scheduled checkpoint (main process): the validation loss into metrics.jsonl, the
        log and the trackers; skipped over its budget or abandoned at a stop (then pending)."""
        if self.val_loss is None:
            return
        cap = self.cfg.validation_loss_max_share
        if self.val_seconds and self.val_seconds + self._last_val_seconds > cap * train_seconds + ALLOWANCE_S:
            run_dir.set_pending("val_loss", step)
            self.log(f"validation loss skipped at step {step}: another {self._last_val_seconds:.1f} s would bring it "
                     f"above validation_loss_max_share = {cap:g} of the {train_seconds:.1f} s of training so far; "
                     f"`sdstudio score {run_dir.path}` measures it later")
            return
        trained = models.plain()
        result = self.val_loss.evaluate(trained["unet"], trained.get("text_encoder"), trained.get("text_encoder_2"),
                                        should_stop=should_stop)
        if result is None:
            run_dir.set_pending("val_loss", step)
            self.log(f"validation loss at step {step} left for later (a stop came): `sdstudio score {run_dir.path}` "
                     "or the resume measures it")
            return
        self._last_val_seconds = result.seconds
        self.val_seconds += result.seconds
        self.record(step, result, run_dir, accelerator, f", {self.val_seconds / max(train_seconds, 1e-9):.0%} of the "
                                                        f"training time so far")

    def defer(self, step: int, run_dir: Any, sampling: bool) -> None:
        """A stop's checkpoint (main process): its validation loss and samples (so its scores)
        are left for later, recorded in the run's pending.json."""
        if self.val_loss is not None:
            run_dir.set_pending("val_loss", step)
        if sampling:
            run_dir.set_pending("samples", step)

    def measure_pending(self, step: int, models: Any, run_dir: Any, accelerator: Any) -> None:
        """On resume: the weights are those of checkpoint `step`; measure its pending validation loss."""
        if self.val_loss is None or step not in run_dir.pending().get("val_loss", []):
            return
        trained = models.plain()
        result = self.val_loss.evaluate(trained["unet"], trained.get("text_encoder"), trained.get("text_encoder_2"))
        assert result is not None
        self.val_seconds += result.seconds
        self.record(step, result, run_dir, accelerator, ", pending since the stop")
        run_dir.set_pending("val_loss", step, waiting=False)

    def record(self, step: int, result: ValidationResult, run_dir: Any, accelerator: Any, note: str = "") -> None:
        """One measured validation loss into metrics.jsonl, the events, the trackers and the log."""
        assert self.val_loss is not None
        run_dir.append_metrics({**result.row(step), "val_set": self.val_loss.held.short})
        self.emit(ValidationLossEvent(step, result.loss, result.seconds, self.val_loss.held.short))
        if self.cfg.report_to != "none":
            accelerator.log({"val_loss": result.loss}, step=step)
        images = f"{result.images} image{'s' if result.images != 1 else ''}"
        self.log(f"validation loss {result.loss:.5f} at step {step} ({images} x {result.timesteps} "
                 f"timesteps, {result.seconds:.2f} s{note})")

    def after_samples(self, step: int, run_dir: Any) -> None:
        """After a checkpoint's samples are written (main process): score them in the background."""
        if not self.cfg.scorers:
            return
        from sdstudio.core.training.scoring import BackgroundScorer

        if self.scorer is None:
            self.scorer = BackgroundScorer(run_dir, self.cfg, self.log)
        self.scorer.submit(step)

    def close(self) -> None:
        if self.scorer is not None:
            self.scorer.close()
            self._scores_before += self.scorer.seconds
            self.scorer = None

    def abandon(self) -> None:
        """At a stop: the scorer finishes the step it is on in the background, nothing waits for
        it (`sdstudio score` scores whatever it left)."""
        if self.scorer is not None:
            self.scorer.close(wait=False)
            self._scores_before += self.scorer.seconds
            self.scorer = None
