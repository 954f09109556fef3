"""The float slider: keys, typed values, mouse drag, clamping, Changed messages."""

from __future__ import annotations

from textual.app import App, ComposeResult

from sdstudio.tui.widgets.slider import FloatSlider


class SliderApp(App):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.changes: list[float] = []

    def compose(self) -> ComposeResult:
        yield FloatSlider(**self.kwargs, id="s")

    def on_float_slider_changed(self, event: FloatSlider.Changed) -> None:
        self.changes.append(event.value)


async def test_keys_move_fine_and_coarse_and_clamp() -> None:
    app = SliderApp(value=0.5, minimum=0.0, maximum=1.0, step=0.01, coarse_step=0.1)
    async with app.run_test(size=(60, 5)) as pilot:
        slider = app.query_one(FloatSlider)
        slider.focus()
        await pilot.press("right", "right")
        assert slider.value == 0.52
        await pilot.press("shift+left")
        assert slider.value == 0.42
        for _ in range(8):
            await pilot.press("shift+right")
        assert slider.value == 1.0  # clamped at the maximum
        await pilot.press("home")
        assert slider.value == 0.0
        await pilot.press("left")
        assert slider.value == 0.0
        await pilot.pause()
        assert app.changes == [0.51, 0.52, 0.42, 0.52, 0.62, 0.72, 0.82, 0.92, 1.0, 0.0]


async def test_typed_value_commits_on_enter_and_escape_cancels() -> None:
    app = SliderApp(value=0.5, minimum=-1.0, maximum=2.0, step=0.05)
    async with app.run_test(size=(60, 5)) as pilot:
        slider = app.query_one(FloatSlider)
        slider.focus()
        await pilot.press("1", ".", "2", "5")
        assert slider.editing == "1.25"
        assert slider.value == 0.5  # nothing applied until enter
        await pilot.press("enter")
        assert slider.value == 1.25 and slider.editing is None
        await pilot.press("9", "escape")
        assert slider.value == 1.25
        await pilot.press("-", "5", "enter")
        assert slider.value == -1.0  # out of range: clamped


async def test_mouse_press_and_drag_set_value() -> None:
    app = SliderApp(value=0.0, minimum=0.0, maximum=1.0, step=0.01)
    async with app.run_test(size=(40, 3)) as pilot:
        slider = app.query_one(FloatSlider)
        track = slider._track_width()
        await pilot.mouse_down(slider, offset=(track - 1, 0))
        assert slider.value == 1.0
        await pilot.hover(slider, offset=(0, 0))
        assert slider.value == 0.0  # dragging follows the pointer
        await pilot.mouse_up(slider, offset=(0, 0))
        await pilot.hover(slider, offset=(track - 1, 0))
        assert slider.value == 0.0  # released: moving no longer drags
        await pilot.click(slider, offset=((track - 1) // 2, 0))
        assert 0.4 < slider.value < 0.6


def test_bad_range_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="maximum"):
        FloatSlider(minimum=1.0, maximum=1.0)
