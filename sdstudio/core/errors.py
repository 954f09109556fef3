"""User-facing errors: the CLI prints them in one line, the TUI shows them."""

from __future__ import annotations


class SdstudioError(Exception):
    """An error caused by input the user can fix; the message says what and how."""


class ConfigError(SdstudioError):
    """A training config field is unknown, of the wrong type or impossible."""

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        self.field = field
        where = f"{source}: " if source else ""
        super().__init__(f"{where}field '{field}': {message}")


class ModelError(SdstudioError):
    """A base model could not be resolved or is of an unsupported family."""


class DatasetError(SdstudioError):
    """A dataset has no usable image or cannot be read at all."""


class TrainingError(SdstudioError):
    """Training stopped for a reason the user can act on (NaN loss, out of memory)."""
