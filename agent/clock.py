"""The clock a run waits by: the real one here, a fake one in tests.

The protocol is declared in :mod:`deskpilot.grounding.stable`, the lowest layer that waits.
"""

from __future__ import annotations

import time

from deskpilot.grounding.stable import Clock

__all__ = ["Clock", "SystemClock"]


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        time.sleep(seconds)
