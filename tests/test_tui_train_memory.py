"""The Train form's training method: the full fine-tuning rows show only for "full", and the memory
estimate under the form follows the options as they change."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static

from sdstudio.tui.app import StudioApp
from sdstudio.tui.settings import load_settings
from test_tui_fixtures import wait_for


async def test_full_rows_and_the_live_memory_estimate(runs_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDSTUDIO_CONFIG", str(tmp_path / "none.toml"))
    app = StudioApp(settings=load_settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        await pilot.press("f2")
        screen = app.screen
        form = screen.query_one("#form")
        memory = screen.query_one("#memory", Static)
        shown = lambda name: form.query_one(f"#row-{name}").display  # noqa: E731
        text = lambda: str(memory.render())  # noqa: E731
        await wait_for(pilot, lambda: "ckpt ~" in text(), timeout=30)
        assert shown("rank") and not shown("use_ema") and not shown("fused_backward")
        lora_text = text()
        assert "Memory est.: RAM ~" in lora_text and "(CPU)" in lora_text  # the test machine has no GPU

        form.query_one("#field-training_method", Select).value = "full"
        await wait_for(pilot, lambda: text() != lora_text, timeout=30)
        assert not shown("rank")
        assert all(shown(n) for n in ("text_encoder_lr", "use_ema", "ema_decay", "ema_update_every", "ema_on_cpu",
                                      "fused_backward", "master_weights", "gradient_checkpointing", "optimizer"))
        full_text = text()  # the demo UNet's weights and AdamW state: tens of MiB per checkpoint, not 1
        assert int(full_text.split("ckpt ~")[1].rstrip("M")) > 10 * int(lora_text.split("ckpt ~")[1].rstrip("M"))

        form.query_one("#field-use_ema", Input).value = "true"
        await wait_for(pilot, lambda: text() != full_text, timeout=30)
        cfg = screen.validate()
        assert cfg is not None and cfg.full and cfg.use_ema

        # back to LoRA: the hidden full rows do not reach the config (use_ema would be refused)
        form.query_one("#field-training_method", Select).value = "lora"
        await pilot.pause()
        cfg = screen.validate()
        assert cfg is not None and not cfg.full and not cfg.use_ema and shown("rank")
