"""A screen that retries failed and blank captures a few times, then says so.

A grab can fail once and work the next time (a monitor reconfiguring, a compositor hiccup),
and some failures do not raise at all: they return a frame of one flat value, all black
(XShm segments that were never written, a locked or powered-down screen) or all white. Acting
on a blank frame is acting blind: the model sees nothing, OCR finds nothing, and a "screen
stable" check passes at once. :class:`CheckedScreen` treats both the same way: try again a
bounded number of times, after a short pause, and then raise :class:`CaptureError`, so a run
fails with a reason instead of retrying forever or acting on nothing.

What counts as blank: every channel of every pixel lies within :data:`BLANK_RANGE` - 1 levels
of one value (``max - min < BLANK_RANGE`` over the whole frame, all channels together; 3, so
0, 1 and 2 are the same black). So a frame of one grey level is blank, but a solid *coloured*
desktop is not (its channels differ), and neither is any frame with content: a single pixel
of text or a cursor is enough. A desktop that really is one flat black or grey (an Xvfb with
no window on it yet, whose root window is black) is blank by this rule: wrap such a screen
only once something is shown, or pass ``blank_range=0`` to turn the check off.

The check reads a strided sample first (about 64 x 64 pixels, a few microseconds) and only
when the sample is flat reads the whole frame, so a tiny piece of content on a flat screen is
never missed and an ordinary screen costs almost nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from deskpilot.grounding.capture import CaptureError, Frame, Screen
from deskpilot.grounding.geometry import ScreenGeometry

log = logging.getLogger(__name__)

BLANK_RANGE = 3
ATTEMPTS = 3
RETRY_DELAY_S = 0.2
_SAMPLE_SIDE = 64


def is_blank(rgb: np.ndarray, blank_range: int = BLANK_RANGE) -> bool:
    """True when ``max - min < blank_range`` over every pixel and channel of the frame."""
    if blank_range <= 0 or rgb.size == 0:
        return rgb.size == 0
    height, width = rgb.shape[:2]
    sample = rgb[::max(1, height // _SAMPLE_SIDE), ::max(1, width // _SAMPLE_SIDE)]
    if int(sample.max()) - int(sample.min()) >= blank_range:
        return False
    return int(rgb.max()) - int(rgb.min()) < blank_range


class CheckedScreen:
    """Wraps a :class:`~grounding.capture.Screen`: grabs that raise or come back blank are
    tried again, up to ``attempts`` grabs in all with ``retry_delay_s`` between them.

    ``sleep`` is for tests. ``geometry`` and ``close`` are the inner screen's.
    """

    def __init__(self, inner: Screen, *, attempts: int = ATTEMPTS,
                 retry_delay_s: float = RETRY_DELAY_S, blank_range: int = BLANK_RANGE,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.inner = inner
        self.attempts = attempts
        self.retry_delay_s = retry_delay_s
        self.blank_range = blank_range
        self._sleep = sleep

    def geometry(self) -> ScreenGeometry:
        """The inner screen's geometry."""
        return self.inner.geometry()

    def grab(self) -> Frame:
        """A frame that is not blank; CaptureError after ``attempts`` failed or blank grabs.

        The error is the last grab's own when it raised, else one that says how many blank
        frames came in a row. Exceptions other than CaptureError are not retried.
        """
        blanks = 0
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self._sleep(self.retry_delay_s)
            try:
                frame = self.inner.grab()
            except CaptureError as exc:
                blanks = 0
                if attempt == self.attempts:
                    raise
                log.warning("screen capture failed (attempt %d of %d): %s", attempt,
                            self.attempts, exc)
                continue
            if not is_blank(frame.rgb, self.blank_range):
                if attempt > 1:
                    log.info("screen capture worked at attempt %d of %d", attempt,
                             self.attempts)
                return frame
            blanks += 1
            log.warning("screen capture returned a blank frame (attempt %d of %d; all "
                        "pixels %d)", attempt, self.attempts, int(frame.rgb.flat[0]))
        if blanks == self.attempts:
            raise CaptureError(f"screen capture returned a blank frame {blanks} times in a row")
        raise CaptureError(f"screen capture failed {self.attempts} times in a row; the last "
                           f"{blanks} grab(s) returned a blank frame")

    def close(self) -> None:
        """Close the inner screen."""
        self.inner.close()


__all__ = ["ATTEMPTS", "BLANK_RANGE", "RETRY_DELAY_S", "CheckedScreen", "is_blank"]
