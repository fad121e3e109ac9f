"""Text that deskpilot shows to people: cut to a length, the same way everywhere."""

from __future__ import annotations

ELLIPSIS = "…"


def shorten(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` characters, else its start and an ellipsis, ``limit``
    characters in all."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
