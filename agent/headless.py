"""The display a task-file run acts on: the current one, or a private Xvfb of its own."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from deskpilot.grounding.xvfb import xvfb

log = logging.getLogger(__name__)


@contextmanager
def run_display(*, new: bool, size: tuple[int, int]) -> Iterator[tuple[str, bool]]:
    """Yield ``(display, started)``: ``$DISPLAY`` unless ``new`` or unset, else a fresh Xvfb.

    ``DISPLAY`` is pointed at the display for the duration, so the input device and the
    capture backend (which read it when first used) act on the same screen.
    """
    current = os.environ.get("DISPLAY")
    if current and not new:
        yield current, False
        return
    with xvfb(*size) as name:
        log.info("started Xvfb %s at %dx%d", name, *size)
        os.environ["DISPLAY"] = name
        try:
            yield name, True
        finally:
            if current is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = current


def parse_size(text: str) -> tuple[int, int]:
    """``1920x1080`` → ``(1920, 1080)``, within what Xvfb and the model handle."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if not (320 <= width <= 7680 and 240 <= height <= 4320):
        raise argparse.ArgumentTypeError(f"{text} is outside 320x240 .. 7680x4320")
    return width, height
