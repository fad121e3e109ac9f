"""Wait for the screen to settle after an action, by comparing small copies of successive frames.

A fixed sleep is either too long (every step pays it) or too short (a slow redraw is missed);
differencing says when drawing has actually stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deskpilot.grounding.capture import Frame, Screen

_STRIDE = 4           # compare every 4th pixel each way: 1/16 of the work, still sees a caret
_CHANGE_LEVEL = 8     # grey-level difference that counts as a change (below: encoder noise)


class Clock(Protocol):
    """Time source and sleeper (a fake one makes waits instant in tests)."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class Settled:
    """The last frame seen, how long the wait took, and whether the screen did settle."""

    frame: Frame
    seconds: float
    stable: bool


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A small grey copy of a frame for cheap comparisons."""
    small = rgb[::_STRIDE, ::_STRIDE]
    return small.max(axis=2)  # max over channels: a coloured change is not averaged away


def changed(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two thumbnails differ anywhere by more than the noise level."""
    if a.shape != b.shape:
        return True
    return bool(np.any(np.abs(a.astype(np.int16) - b.astype(np.int16)) > _CHANGE_LEVEL))


def wait_stable(screen: Screen, clock: Clock, *, timeout_s: float = 2.0,
                interval_s: float = 0.05, quiet_frames: int = 2) -> Settled:
    """Grab frames until ``quiet_frames`` successive ones match, or ``timeout_s`` passes."""
    start = clock.now()
    frame = screen.grab()
    last, quiet = thumbnail(frame.rgb), 0
    while True:
        if clock.now() - start >= timeout_s:
            return Settled(frame, clock.now() - start, stable=False)
        clock.sleep(interval_s)
        frame = screen.grab()
        current = thumbnail(frame.rgb)
        quiet = 0 if changed(last, current) else quiet + 1
        last = current
        if quiet >= quiet_frames:
            return Settled(frame, clock.now() - start, stable=True)
