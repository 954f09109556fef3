"""The Train screen's form: the main training fields, one compact row each.

The form only turns text into typed values (`parse_cli_value`, so the rules match the CLI);
the screen validates the whole config with `build_config` and marks the row the error names.
"DreamBooth + prior preservation" is a fourth Method choice: the config's `method` is
"dreambooth" with `with_prior_preservation = true`, and the class-image rows show. Training
"full" shows the full fine-tuning rows (EMA, fused backward, master weights, the text encoders'
learning rate) and hides the LoRA rank.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from rich.text import Text
from textual.widgets import Input, Label, Select, Static

from sdstudio.core.config import (MASTER_WEIGHTS, METHODS, OPTIMIZERS, TRAINING_METHODS, TrainConfig,
                                  parse_cli_value)

PRIOR = "dreambooth+prior"  # the Method choice for DreamBooth with prior preservation
METHOD_CHOICES = (*((m, m) for m in METHODS), ("DreamBooth + prior preservation", PRIOR))
# (field, label, placeholder); `method` and the CHOICES fields are Selects, `validation_prompts` takes "a | b".
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("method", "Method", ""),
    ("training_method", "Trains", ""),
    ("pretrained_model_name_or_path", "Base model", "demo, a folder, a .safetensors or a hub id"),
    ("train_data_dir", "Dataset", "data/shapes (images + metadata.jsonl captions)"),
    ("instance_data_dir", "Instance images", "data/dreambooth/pink-heart"),
    ("instance_prompt", "Instance prompt", "a sks shape (sks: the new word)"),
    ("class_prompt", "Class prompt", "a purple shape (what the subject is)"),
    ("class_data_dir", "Class images", "a folder; missing images are drawn"),
    ("num_class_images", "Class count", "how many class images"),
    ("prior_loss_weight", "Prior weight", "1.0"),
    ("validation_prompts", "Sample prompts", ""),
    ("max_train_steps", "Steps", ""),
    ("learning_rate", "Learning rate", ""),
    ("rank", "LoRA rank", ""),
    ("optimizer", "Optimizer", ""),
    ("text_encoder_lr", "Text enc. LR", "learning rate (with train_text_encoder)"),
    ("use_ema", "EMA", "true: keep an EMA of the weights"),
    ("ema_decay", "EMA decay", "0.9999"),
    ("ema_update_every", "EMA every", "optimizer steps"),
    ("ema_on_cpu", "EMA on CPU", "true: in host RAM"),
    ("fused_backward", "Fused backward", "true: step in the gradient hook"),
    ("master_weights", "Master weights", ""),
    ("gradient_checkpointing", "Grad. checkpoint", "true: less memory, ~30 % slower"),
    ("resolution", "Resolution", ""),
    ("enable_bucket", "Buckets", "true: keep aspect ratios (64 px buckets)"),
    ("masked_loss", "Masked loss", "true: learn only where each image's mask is white"),
    ("unmasked_weight", "Background wt.", "0: ignored; 1: no masking"),
    ("train_batch_size", "Batch size", ""),
    ("validation_steps", "Sample every", "steps"),
    ("checkpointing_steps", "Checkpoint every", "steps"),
    ("seed", "Seed", ""),
)
FIELD_NAMES = tuple(name for name, _, _ in FIELDS)
CHOICES = {"training_method": TRAINING_METHODS, "optimizer": OPTIMIZERS, "master_weights": MASTER_WEIGHTS}
# Rows only one training method uses.
FULL_ROWS = ("text_encoder_lr", "use_ema", "ema_decay", "ema_update_every", "ema_on_cpu", "fused_backward",
             "master_weights")
TRAINING_ONLY = {"lora": ("rank",), "full": FULL_ROWS}
FULL_DEFAULTS = {name: getattr(TrainConfig(), name) for name in FULL_ROWS}
# Rows only one method uses, and sample prompts that fit each method (real ones, from the shipped configs).
DREAMBOOTH_ROWS = ("instance_data_dir", "instance_prompt")
PRIOR_ROWS = ("class_prompt", "class_data_dir", "num_class_images", "prior_loss_weight")
METHOD_ONLY = {"text2image": ("train_data_dir",), "dreambooth": DREAMBOOTH_ROWS, PRIOR: DREAMBOOTH_ROWS + PRIOR_ROWS}
OPTIONAL_TEXT = ("train_data_dir", "instance_data_dir", "instance_prompt", "class_data_dir", "class_prompt",
                 "text_encoder_lr")
PROMPT_EXAMPLE = {"text2image": "a red circle on a white background | a blue square",
                  "dreambooth": "a sks shape | a red circle on a white background",
                  PRIOR: "a sks shape | a purple shape"}
# Errors about a field with no row of its own are shown on the row that decides it.
ROW_OF = {"with_prior_preservation": "method"}


def effective_method(method: str, instance_dir: str) -> str:
    """`auto` is DreamBooth when an instance folder is given (as `build_config` decides), else text-to-image."""
    if method in METHOD_ONLY:
        return method
    return "dreambooth" if instance_dir.strip() else "text2image"


def method_choice(values: dict[str, Any]) -> str:
    """The Method row's value for a config: prior preservation is a choice of its own."""
    method = values.get("method") or "auto"
    if values.get("with_prior_preservation") and method != "text2image":
        return PRIOR
    return method


PROMPT_SEPARATOR = " | "


def to_text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "validation_prompts":
        return PROMPT_SEPARATOR.join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def from_text(name: str, text: str) -> Any:
    """The typed value of one row; raises ConfigError naming the field."""
    text = text.strip()
    if name == "validation_prompts":
        return [p.strip() for p in text.split("|") if p.strip()]
    if text == "" and name in OPTIONAL_TEXT:
        return None
    return parse_cli_value(name, text)


class ConfigForm(VerticalScroll, can_focus=False):
    """Rows of label + compact input; `values()` reads them, `fill()` writes them.
    Not focusable itself: Tab and a screen switch land on a field, never on the scroll box."""

    DEFAULT_CSS = """
    ConfigForm { height: 1fr; }
    ConfigForm > .form-row { height: 1; margin-bottom: 0; }
    ConfigForm .form-label { width: 17; color: $text-muted; }
    ConfigForm .form-row.-invalid .form-label { color: $error; text-style: bold; }
    ConfigForm Input, ConfigForm Select { width: 1fr; }
    ConfigForm #form-extra { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, values: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._initial = values

    def compose(self) -> ComposeResult:
        for name, label, placeholder in FIELDS:
            with Horizontal(classes="form-row", id=f"row-{name}"):
                yield Label(label, classes="form-label")
                value = self._initial.get(name)
                if name == "method":
                    yield Select(METHOD_CHOICES, value=method_choice(self._initial), allow_blank=False,
                                 compact=True, id="field-method")
                elif name in CHOICES:
                    yield Select([(c, c) for c in CHOICES[name]], value=value or CHOICES[name][0], allow_blank=False,
                                 compact=True, id=f"field-{name}")
                else:
                    yield Input(to_text(name, value), placeholder=placeholder, compact=True, id=f"field-{name}")
        yield Static("", id="form-extra")  # the config's settings that have no row (show_extra)

    def on_mount(self) -> None:
        self.show_method_fields()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id in ("field-method", "field-training_method"):
            self.show_method_fields()

    @property
    def shown_method(self) -> str:
        return effective_method(str(self.query_one("#field-method", Select).value),
                                self.query_one("#field-instance_data_dir", Input).value)

    def show_method_fields(self) -> None:
        """Only the rows of the chosen method, with that method's example sample prompts."""
        method = self.shown_method
        shown = METHOD_ONLY[method]
        for name in {n for names in METHOD_ONLY.values() for n in names}:
            self.query_one(f"#row-{name}").display = name in shown
        self.query_one("#field-validation_prompts", Input).placeholder = PROMPT_EXAMPLE[method]
        training = str(self.query_one("#field-training_method", Select).value)
        for kind, names in TRAINING_ONLY.items():
            for name in names:
                self.query_one(f"#row-{name}").display = kind == training

    def values(self) -> dict[str, Any]:
        """Typed values of every row (ConfigError on the first row that does not parse)."""
        choice = self.query_one("#field-method", Select).value
        out: dict[str, Any] = {"method": "dreambooth" if choice == PRIOR else choice,
                               "with_prior_preservation": choice == PRIOR}
        for name in FIELD_NAMES[1:]:
            if name in CHOICES:
                out[name] = self.query_one(f"#field-{name}", Select).value
            elif self.query_one(f"#row-{name}").display:
                out[name] = from_text(name, self.query_one(f"#field-{name}", Input).value)
            elif name in OPTIONAL_TEXT:  # another method's folder or prompt: not part of this run
                out[name] = None
            elif name in FULL_ROWS:  # a LoRA run: the full fine-tuning options at their defaults
                out[name] = FULL_DEFAULTS[name]
        return out

    def fill(self, values: dict[str, Any]) -> None:
        for name in FIELD_NAMES:
            if name not in values and not (name == "method" and "with_prior_preservation" in values):
                continue
            if name == "method":
                self.query_one("#field-method", Select).value = method_choice(values)
            elif name in CHOICES:
                self.query_one(f"#field-{name}", Select).value = values[name]
            else:
                self.query_one(f"#field-{name}", Input).value = to_text(name, values[name])
        self.show_method_fields()

    def show_extra(self, settings: list[tuple[str, str]]) -> None:
        """List, below the rows, what the config sets that no row shows (a TOML's snr_gamma, ...):
        the form never hides a setting the run will use."""
        text = Text()
        if settings:
            text.append("also set by the config:\n")
            text.append("\n".join(f"  {name} = {value}" for name, value in settings))
        self.query_one("#form-extra", Static).update(text)

    def mark(self, field: str | None) -> None:
        """Highlight the row of the field an error names (None clears)."""
        field = ROW_OF.get(field or "", field)
        for row in self.query(".form-row"):
            invalid = row.id == f"row-{field}"
            if row.has_class("-invalid") != invalid:  # no restyle when nothing changes
                row.set_class(invalid, "-invalid")
