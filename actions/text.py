"""Text that deskpilot shows to people or writes down: cut to a length, secrets hidden, the
same way everywhere."""

from __future__ import annotations

from collections.abc import Sequence

ELLIPSIS = "…"
SECRET = "[secret]"  # what a secret value becomes in anything written or shown


def shorten(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` characters, else its start and an ellipsis, ``limit``
    characters in all."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def plural(count: int, noun: str) -> str:
    """``1 character``, ``2 characters``: a count with its noun (regular plurals only)."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret value in ``text`` with :data:`SECRET`, in the order given (longest
    first hides a secret that contains another one whole)."""
    for secret in secrets:
        text = text.replace(secret, SECRET)
    return text
