"""Waiting for a stable screen, on a scripted screen and a clock that only moves when slept on."""

from __future__ import annotations

import numpy as np
import pytest

from deskpilot.grounding.capture import FakeScreen
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.grounding.stable import changed, thumbnail, wait_stable
from tests.helpers.fakes import FakeClock

INTERVAL = 0.0625  # a binary fraction, so sums of sleeps are exact
SHAPE = (40, 64, 3)
GEOMETRY = ScreenGeometry(0, 0, SHAPE[1], SHAPE[0])  # for frame callables


def shade(level: int, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A uniform grey image."""
    return np.full(shape, level, np.uint8)


def with_square(level: int) -> np.ndarray:
    """A grey image with a bright square, as when a window redraws one area."""
    image = shade(level)
    image[8:24, 8:24] = 255
    return image


def test_settles_two_frames_after_the_last_change() -> None:
    # Three frames of drawing, then the screen stays put.
    frames = [shade(0), shade(60), with_square(60), with_square(120)]
    screen, clock = FakeScreen(frames), FakeClock(100.0)
    settled = wait_stable(screen, clock, interval_s=INTERVAL, quiet_frames=2)
    assert settled.stable
    # Grabs 0..3 change, grabs 4 and 5 repeat the last frame: two quiet comparisons.
    assert screen.grabs == 6
    assert settled.seconds == pytest.approx(5 * INTERVAL)
    assert clock.slept == [INTERVAL] * 5


def test_a_still_screen_settles_after_quiet_frames_intervals() -> None:
    settled = wait_stable(FakeScreen(shade(30)), FakeClock(100.0), interval_s=INTERVAL,
                          quiet_frames=3)
    assert settled.stable
    assert settled.seconds == pytest.approx(3 * INTERVAL)


def test_times_out_unstable_when_every_frame_differs() -> None:
    screen, clock = FakeScreen(lambda n: shade(n * 20 % 256), GEOMETRY), FakeClock(100.0)
    settled = wait_stable(screen, clock, timeout_s=0.5, interval_s=INTERVAL)
    assert not settled.stable
    assert settled.seconds == pytest.approx(0.5)
    assert clock.slept == [INTERVAL] * 8  # it gave up at the timeout, not later


def test_change_below_the_noise_level_counts_as_stable() -> None:
    # Encoder noise: every frame a few grey levels off the one before.
    frames = [shade(100 + (3 if n % 2 else 0)) for n in range(10)]
    settled = wait_stable(FakeScreen(frames), FakeClock(100.0), interval_s=INTERVAL,
                          quiet_frames=2)
    assert settled.stable
    assert settled.seconds == pytest.approx(2 * INTERVAL)


def test_returns_the_last_frame_grabbed() -> None:
    # The quiet frames differ by noise only: the newest one is returned, not the first quiet one.
    frames = [shade(0), with_square(90), with_square(92), with_square(94)]
    screen = FakeScreen(frames)
    settled = wait_stable(screen, FakeClock(100.0), interval_s=INTERVAL, quiet_frames=2)
    assert settled.stable
    assert screen.grabs == 4
    assert np.array_equal(settled.frame.rgb, frames[3])


def test_returns_the_last_frame_on_timeout() -> None:
    screen = FakeScreen(lambda n: shade(n * 40 % 256), GEOMETRY)
    settled = wait_stable(screen, FakeClock(100.0), timeout_s=0.2, interval_s=INTERVAL)
    assert not settled.stable
    assert np.array_equal(settled.frame.rgb, shade((screen.grabs - 1) * 40 % 256))


def test_thumbnails_of_different_shapes_count_as_changed() -> None:
    a = thumbnail(shade(50, (40, 64, 3)))
    b = thumbnail(shade(50, (48, 64, 3)))
    assert a.shape != b.shape
    assert changed(a, b)


def test_changed_thresholds_and_colour_changes() -> None:
    base = shade(100)
    assert not changed(thumbnail(base), thumbnail(base))
    assert not changed(thumbnail(base), thumbnail(shade(108)))   # at the noise level
    assert changed(thumbnail(base), thumbnail(shade(109)))       # just above it
    red = base.copy()
    red[..., 0] = 200  # one channel only: the grey thumbnail must still see it
    assert changed(thumbnail(base), thumbnail(red))


def test_a_one_pixel_change_on_the_sampling_grid_is_seen() -> None:
    base = shade(0)
    caret = base.copy()
    caret[8, 12] = 255  # on the thumbnail's every-4th-pixel grid
    assert changed(thumbnail(base), thumbnail(caret))
