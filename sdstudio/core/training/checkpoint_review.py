"""What the trainer does after a checkpoint: the validation loss, then (optionally) image scores.

An object the trainer holds, so its loop carries only one-line hooks: `hold_out` in setup,
`prepare` once the models are loaded, `after_save` after a checkpoint, `after_samples` after
samples are written, `close` at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdstudio.core.config import TrainConfig
from sdstudio.core.events import Event, ValidationLossEvent
from sdstudio.core.training.examples import Example
from sdstudio.core.training.validation_loss import HeldOut, ValidationLoss, split_examples


class CheckpointReview:
    """The validation loss at every checkpoint and the background image scorer of one run."""

    def __init__(self, cfg: TrainConfig, log: Callable[..., None], emit: Callable[[Event], None]) -> None:
        self.cfg = cfg
        self.log = log
        self.emit = emit
        self.held: HeldOut | None = None
        self.val_loss: ValidationLoss | None = None
        self.scorer: Any = None  # scoring.BackgroundScorer, started with the first samples

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
        if models.text_encoder_2 is not None:
            self.log("validation loss: not measured for SDXL yet (it needs both text encoders and time ids)", "warning")
            return
        with models.sampling_pipeline() as pipe:
            self.val_loss = ValidationLoss(self.cfg, self.held, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                                           models.noise_scheduler, models.device)

    def after_save(self, step: int, models: Any, run_dir: Any, accelerator: Any) -> None:
        """After a checkpoint is saved (main process): the validation loss into metrics.jsonl, the
        log and the trackers."""
        if self.val_loss is None:
            return
        trained = models.plain()
        result = self.val_loss.evaluate(trained["unet"], trained.get("text_encoder"))
        run_dir.append_metrics({**result.row(step), "val_set": self.val_loss.held.short})
        self.emit(ValidationLossEvent(step, result.loss, result.seconds, self.val_loss.held.short))
        if self.cfg.report_to != "none":
            accelerator.log({"val_loss": result.loss}, step=step)
        images = f"{result.images} image{'s' if result.images != 1 else ''}"
        self.log(f"validation loss {result.loss:.5f} at step {step} ({images} x {result.timesteps} "
                 f"timesteps, {result.seconds:.2f} s)")

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
            self.scorer = None
