"""MssScreen on a real (Xvfb) display: geometry, pixels in RGB order, and clear errors."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from deskpilot.grounding.capture import CaptureError, Frame, MssScreen, list_monitors
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.grounding.xvfb import launched

pytestmark = pytest.mark.display

XVFB = ScreenGeometry(0, 0, 1280, 800, scale=1.0, index=1)
ORANGE = (255, 128, 0)  # every channel different, so any channel swap shows
WINDOW = (700, 500, 200, 120)  # x, y, width, height of the test window (no window manager)


@pytest.fixture
def screen(display: str) -> Iterator[MssScreen]:
    """An MssScreen on the session's Xvfb display."""
    s = MssScreen()
    yield s
    s.close()


def test_geometry_of_the_xvfb_display(screen: MssScreen) -> None:
    assert screen.geometry() == XVFB
    assert list_monitors() == [XVFB]


def test_grab_gives_an_rgb_frame(screen: MssScreen) -> None:
    before = time.monotonic()
    frame = screen.grab()
    assert isinstance(frame, Frame)
    assert frame.rgb.shape == (800, 1280, 3)
    assert frame.rgb.dtype == np.uint8 and frame.rgb.flags.c_contiguous
    assert frame.screen == XVFB
    assert before <= frame.captured_at <= time.monotonic()


def _mask(rgb: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    return np.all(rgb == np.array(color, np.uint8), axis=-1)


def test_pixels_are_rgb_and_upright(display: str, screen: MssScreen) -> None:
    x, y, w, h = WINDOW
    title = "deskpilot-capture-test"
    argv = ["xlogo", "-title", title, "-bg", "#ff8000", "-fg", "#0000ff",
            "-geometry", f"{w}x{h}+{x}+{y}"]
    with launched(argv, display, window=title):
        # The window is mapped before it is painted: poll frames rather than sleep a guess.
        deadline = time.monotonic() + 5.0
        while True:
            rgb = screen.grab().rgb
            orange = _mask(rgb, ORANGE)
            if orange.sum() > w * h // 2 or time.monotonic() > deadline:
                break
    ys, xs = np.nonzero(orange)
    assert xs.size, "the orange window never appeared"
    # The window (plus at most a one-pixel border) sits where it was placed, not mirrored or
    # transposed; its inside is orange, never the BGR-swapped (0, 128, 255).
    assert x <= xs.min() <= x + 1 and x + w - 1 <= xs.max() <= x + w
    assert y <= ys.min() <= y + 1 and y + h - 1 <= ys.max() <= y + h
    assert not _mask(rgb, (0, 128, 255)).any()
    logo = _mask(rgb[y:y + h, x:x + w], (0, 0, 255))
    assert logo.any(), "the blue logo is missing inside the window"


def test_missing_monitor_lists_the_monitors(display: str) -> None:
    message = re.escape("monitor 3 does not exist; this display has 1 monitor(s): "
                        "1: 1280x800+0+0")
    with pytest.raises(CaptureError, match=message):
        MssScreen(monitor=3).grab()
    with pytest.raises(CaptureError, match=message):
        MssScreen(monitor=3).geometry()


def test_monitor_zero_is_the_union(display: str) -> None:
    s = MssScreen(monitor=0)
    try:
        assert s.grab().screen == ScreenGeometry(0, 0, 1280, 800, index=0)
    finally:
        s.close()


def test_bad_monitor_argument() -> None:
    with pytest.raises(ValueError, match="monitor"):
        MssScreen(monitor=-1)


def test_unreachable_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":999")
    with pytest.raises(CaptureError, match=r"cannot open display ':999' — is DISPLAY set"):
        MssScreen().grab()
    with pytest.raises(CaptureError, match="cannot open display ':999'"):
        list_monitors()
    monkeypatch.delenv("DISPLAY")
    with pytest.raises(CaptureError, match="DISPLAY is not set"):
        MssScreen().geometry()


def test_close_then_grab_reopens(screen: MssScreen) -> None:
    screen.grab()
    screen.close()
    screen.close()  # closing twice is harmless
    assert screen.grab().rgb.shape == (800, 1280, 3)


def test_grab_from_another_thread_is_refused(screen: MssScreen) -> None:
    screen.grab()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            screen.grab()
        except CaptureError as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "thread" in str(errors[0])

    screen.close()  # after close, the next grab may come from any thread
    frames: list[Frame] = []
    thread = threading.Thread(target=lambda: frames.append(screen.grab()))
    thread.start()
    thread.join()
    assert len(frames) == 1
    screen.close()
