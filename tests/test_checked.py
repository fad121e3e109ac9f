"""CheckedScreen: failed and blank grabs are retried a bounded number of times."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from deskpilot.grounding.capture import CaptureError, FakeScreen
from deskpilot.grounding.checked import BLANK_RANGE, CheckedScreen, is_blank
from deskpilot.grounding.geometry import ScreenGeometry

W, H = 320, 200
GEOMETRY = ScreenGeometry(0, 0, W, H)


def flat(value: int | tuple[int, int, int]) -> np.ndarray:
    image = np.empty((H, W, 3), np.uint8)
    image[:] = value
    return image


def desktop() -> np.ndarray:
    """A real-looking screen: a coloured background and a window with text-like strokes."""
    image = flat((40, 90, 140))
    image[40:160, 60:260] = 230
    image[60:64, 80:200] = 20
    return image


class Sleeps(list[float]):
    """A sleeper that records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Scripted(FakeScreen):
    """A FakeScreen whose grabs raise where the script says ``CaptureError``."""

    def __init__(self, script: list[np.ndarray | type[Exception]]) -> None:
        self._script = script
        super().__init__(self._image, GEOMETRY)

    def _image(self, n: int) -> np.ndarray:
        item = self._script[min(n, len(self._script) - 1)]
        if isinstance(item, type):
            raise item(f"grab {n} failed")
        return item


def checked(screen: FakeScreen, **kwargs: object) -> tuple[CheckedScreen, Sleeps]:
    sleeps = Sleeps()
    return CheckedScreen(screen, sleep=sleeps, **kwargs), sleeps  # type: ignore[arg-type]


def test_a_good_frame_is_returned_at_once() -> None:
    screen = FakeScreen(desktop())
    wrapper, sleeps = checked(screen)
    frame = wrapper.grab()
    assert np.array_equal(frame.rgb, desktop())
    assert (screen.grabs, sleeps) == (1, [])


def test_a_black_frame_then_a_good_one_takes_one_retry() -> None:
    screen = FakeScreen([flat(0), desktop()])
    wrapper, sleeps = checked(screen, retry_delay_s=0.25)
    frame = wrapper.grab()
    assert np.array_equal(frame.rgb, desktop())
    assert (screen.grabs, sleeps) == (2, [0.25])


@pytest.mark.parametrize("value", [0, 1, 128, 255])
def test_always_blank_raises_after_exactly_the_attempts(value: int) -> None:
    screen = FakeScreen(flat(value))
    wrapper, sleeps = checked(screen)
    with pytest.raises(CaptureError) as caught:
        wrapper.grab()
    assert str(caught.value) == "screen capture returned a blank frame 3 times in a row"
    assert screen.grabs == 3
    assert len(sleeps) == 2  # between the grabs, not after the last


def test_the_number_of_attempts_is_a_parameter() -> None:
    screen = FakeScreen(flat(0))
    wrapper, _ = checked(screen, attempts=5)
    with pytest.raises(CaptureError, match="5 times in a row"):
        wrapper.grab()
    assert screen.grabs == 5


def test_two_failed_grabs_then_a_good_one() -> None:
    screen = Scripted([CaptureError, CaptureError, desktop()])
    wrapper, sleeps = checked(screen)
    assert np.array_equal(wrapper.grab().rgb, desktop())
    assert screen.grabs == 3 and len(sleeps) == 2


def test_the_last_grab_error_is_raised_when_every_grab_fails() -> None:
    screen = Scripted([CaptureError])
    wrapper, _ = checked(screen)
    with pytest.raises(CaptureError, match="grab 2 failed"):
        wrapper.grab()
    assert screen.grabs == 3


def test_blank_frames_ending_a_mixed_run_are_reported_as_such() -> None:
    screen = Scripted([CaptureError, flat(0), flat(0)])
    wrapper, _ = checked(screen)
    with pytest.raises(CaptureError, match="failed 3 times in a row; the last 2 grab"):
        wrapper.grab()


def test_other_exceptions_are_not_retried() -> None:
    screen = Scripted([ValueError, desktop()])
    wrapper, sleeps = checked(screen)
    with pytest.raises(ValueError, match="grab 0 failed"):
        wrapper.grab()
    assert screen.grabs == 1 and sleeps == []


@pytest.mark.parametrize("content", [
    lambda img: img.__setitem__((100, 200), 255),          # one white pixel on black
    lambda img: img.__setitem__((3, 317, 1), 5),            # one off-sample pixel, one channel
    lambda img: img.__setitem__((slice(190, 195), slice(5, 40)), 200),  # a few pixels of text
], ids=["one_pixel", "one_channel_off_the_sample", "a_little_text"])
def test_a_flat_screen_with_any_content_is_not_blank(
        content: Callable[[np.ndarray], None]) -> None:
    image = flat(0)
    content(image)
    assert not is_blank(image)
    screen = FakeScreen(image)
    wrapper, sleeps = checked(screen)
    wrapper.grab()
    assert screen.grabs == 1 and sleeps == []


def test_the_threshold() -> None:
    image = flat(10)
    image[7, 9] = 10 + BLANK_RANGE - 1  # within the range: still blank (noise)
    assert is_blank(image)
    image[7, 9] = 10 + BLANK_RANGE  # at the range: content
    assert not is_blank(image)


def test_a_solid_coloured_desktop_is_not_blank_but_a_flat_grey_one_is() -> None:
    assert not is_blank(flat((40, 90, 140)))
    assert is_blank(flat((90, 90, 91)))


def test_blank_range_zero_turns_the_check_off() -> None:
    screen = FakeScreen(flat(0))
    wrapper, _ = checked(screen, blank_range=0)
    wrapper.grab()
    assert screen.grabs == 1


def test_geometry_and_close_are_the_inner_screens() -> None:
    screen = FakeScreen(desktop())
    wrapper = CheckedScreen(screen)
    assert wrapper.geometry() == GEOMETRY
    wrapper.close()
    assert screen.closed


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CheckedScreen(FakeScreen(desktop()), attempts=0)
