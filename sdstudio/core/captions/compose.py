"""From a model's raw caption to the line a folder keeps: modes, trigger word, prefix, suffix, word limit.

Kept apart from the models so that the CLI, the studio's review and the tests share one rule.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("fill", "replace", "append")
TRIGGER_SLOT = "[trigger]"


@dataclass(frozen=True)
class Style:
    """How a pass shapes each caption."""

    mode: str = "fill"  # fill: only images without a caption; replace: every image; append: old + new
    trigger: str = ""  # put first, or substituted for [trigger] where the text has one
    prefix: str = ""
    suffix: str = ""
    max_words: int = 0  # 0: no limit

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: one of {', '.join(MODES)}")
        if self.max_words < 0:
            raise ValueError(f"max_words {self.max_words}: 0 (no limit) or more")


def wants(style: Style, old: str | None) -> bool:
    """Whether a pass in this mode captions an image whose caption is `old` (fill skips captioned ones)."""
    return style.mode != "fill" or not (old or "").strip()


def _clean(text: str) -> str:
    return " ".join(text.replace("\n", " ").split())


def _limit(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words]).rstrip(",;:") if max_words and len(words) > max_words else text


def _join(*parts: str) -> str:
    """Join non-empty parts with ", " unless a part already ends in punctuation-free space."""
    kept = [p.strip().strip(",").strip() for p in parts if p and p.strip().strip(",").strip()]
    return ", ".join(kept)


def compose(style: Style, raw: str, old: str | None) -> str:
    """The caption to write for a model's `raw` caption of an image whose caption is `old`."""
    body = _limit(_clean(raw), style.max_words)
    text = _join(style.prefix, body, style.suffix)
    trigger = style.trigger.strip()
    if trigger:
        if TRIGGER_SLOT in text:
            text = text.replace(TRIGGER_SLOT, trigger)
        elif not (text == trigger or text.startswith(trigger + ",") or text.startswith(trigger + " ")):
            text = _join(trigger, text)
    elif TRIGGER_SLOT in text:
        text = _clean(text.replace(TRIGGER_SLOT, ""))
    if style.mode == "append" and (old or "").strip():
        text = _join(old or "", text)
    return text
