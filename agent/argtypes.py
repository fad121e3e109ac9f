"""Value parsers for argparse, shared by the command line and the benchmarks' own parsers."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def region(text: str) -> tuple[int, int, int, int]:
    """``X1,Y1,X2,Y2`` in pixels, a non-empty rectangle."""
    try:
        x1, y1, x2, y2 = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X1,Y1,X2,Y2 in pixels, got {text!r}"
                                         ) from None
    if x2 <= x1 or y2 <= y1 or min(x1, y1) < 0:
        raise argparse.ArgumentTypeError(f"{text}: need 0 <= X1 < X2 and 0 <= Y1 < Y2")
    return x1, y1, x2, y2


def patch_budget(text: str) -> int:
    """An image budget in patches, inside the model's own limits."""
    # Imported here: the pytest plugin loads this module in every pytest session.
    from deskpilot.grounding.preprocess import DEFAULT_MAX_PATCHES, DEFAULT_MIN_PATCHES

    # Outside the model's range llama.cpp resizes the image again and pads it with black
    # bars, which would shift every box the model answers.
    value = int(text)
    if not DEFAULT_MIN_PATCHES <= value <= DEFAULT_MAX_PATCHES:
        raise argparse.ArgumentTypeError(
            f"must be between {DEFAULT_MIN_PATCHES} and {DEFAULT_MAX_PATCHES}, got {value}")
    return value


def positive_float(text: str) -> float:
    """A number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def size(text: str) -> tuple[int, int]:
    """``1920x1080`` → ``(1920, 1080)``, within what Xvfb and the model handle."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if not (320 <= width <= 7680 and 240 <= height <= 4320):
        raise argparse.ArgumentTypeError(f"{text} is outside 320x240 .. 7680x4320")
    return width, height


def shard(text: str) -> tuple[int, int]:
    """``K/N`` → ``(K, N)``: the K-th of N shards, 1 <= K <= N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text}: need 1 <= K <= N")
    return k, n
