"""What the trainer does after a checkpoint: the validation loss, then (optionally) image scores.

A mixin, so the trainer's loop carries only one-line hooks: `_hold_out` in setup,
`_prepare_validation_loss` once the models are loaded, `_review_checkpoint` after a save,
`_score_samples` after samples are written, `_finish_scoring` at the end.
"""

from __future__ import annotations

from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.events import ValidationLossEvent
from sdstudio.core.training.examples import Example
from sdstudio.core.training.validation_loss import ValidationLoss, split_examples


class CheckpointReview:
    """Mixed into the Trainer: what happens after a checkpoint is saved (validation loss, scores).

    Kept out of the trainer's loop so the hooks there stay single lines.
    """

    cfg: TrainConfig
    accelerator: Any
    run_dir: Any
    is_main: bool
    pipe: Any
    noise_scheduler: Any
    device: Any
    text_encoder: Any
    unet: Any

    def _hold_out(self, examples: list[Example]) -> list[Example]:
        """Hook in setup: returns the examples to train on; remembers the held-out set."""
        if not self.cfg.validation_loss:
            self._held = None
            return examples
        train, self._held = split_examples(self.cfg, examples)
        self.log(self._held.note)  # type: ignore[attr-defined]
        return train

    def _prepare_validation_loss(self) -> None:
        """Hook after the models load: encode the held-out images once."""
        held = getattr(self, "_held", None)
        self._val_loss = None
        if held is not None and self.is_main:
            self._val_loss = ValidationLoss(self.cfg, held, self.pipe.vae, self.pipe.text_encoder, self.pipe.tokenizer,
                                            self.noise_scheduler, self.device)

    def _review_checkpoint(self, step: int) -> None:
        """Hook after a checkpoint is saved: the validation loss into metrics.jsonl, the log and trackers."""
        if getattr(self, "_val_loss", None) is None or not self.is_main:
            return
        unwrap = self.accelerator.unwrap_model
        te = unwrap(self.text_encoder) if self.cfg.train_text_encoder else None
        result = self._val_loss.evaluate(unwrap(self.unet), te)
        self.run_dir.append_metrics({**result.row(step), "val_set": self._val_loss.held.short})
        self.emit(ValidationLossEvent(step, result.loss, result.seconds, self._val_loss.held.short))  # type: ignore[attr-defined]
        if self.cfg.report_to != "none":
            self.accelerator.log({"val_loss": result.loss}, step=step)
        images = f"{result.images} image{'s' if result.images != 1 else ''}"
        self.log(f"validation loss {result.loss:.5f} at step {step} ({images} x {result.timesteps} "  # type: ignore[attr-defined]
                 f"timesteps, {result.seconds:.2f} s)")

    def _score_samples(self, step: int) -> None:
        """Hook after a checkpoint's samples are written: score them in the background (scorers config)."""
        if not self.cfg.scorers or not self.is_main or self.run_dir is None:
            return
        from sdstudio.core.training.scoring import BackgroundScorer

        if getattr(self, "_scorer", None) is None:
            self._scorer = BackgroundScorer(self.run_dir, self.cfg, self.log)  # type: ignore[attr-defined]
        self._scorer.submit(step)

    def _finish_scoring(self) -> None:
        scorer = getattr(self, "_scorer", None)
        if scorer is not None:
            scorer.close()
