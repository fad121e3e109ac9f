"""Text that deskpilot shows to people or writes down: cut to a length, secrets hidden, control
sequences made visible, the same way everywhere.

:func:`redact` is the one place that decides what counts as a secret's copy. It hides, for each
secret value of a task:

- exact copies, and the copies other writers make of it: JSON and ``repr`` escapes, quotes
  doubled (CSV, SQL, YAML), percent-encoding;
- near copies: what OCR or the model reads back one or two characters off. The text and the
  secret are compared case-folded, without whitespace, with look-alike characters folded
  (0/O, 1/l/I/|, 5/S, ...), and any stretch within :func:`near_distance` edits is hidden;
- a start of the secret cut off by :func:`shorten` (a prefix of at least
  :data:`MIN_PREFIX` characters right before the ellipsis).

Secrets shorter than :data:`MIN_NEAR` characters are only hidden exactly (and escaped): a near
match of a three-letter value would hide every other short word.
"""

from __future__ import annotations

import json
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Sequence

ELLIPSIS = "…"
SECRET = "[secret]"  # what a secret value becomes in anything written or shown
MIN_NEAR = 6         # secrets at least this long are also hidden when copied a little wrong
MIN_PREFIX = 4       # the shortest start of a secret hidden before a cut's ellipsis


def plural(count: int, noun: str) -> str:
    """``1 character``, ``2 characters``: a count with its noun (regular plurals only)."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def shorten(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` characters, else its start and an ellipsis, ``limit``
    characters in all."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


# ---------------------------------------------------------------------------------------------
# Secrets


def near_distance(secret: str) -> int:
    """How many edits a near copy of ``secret`` may differ by (0 below :data:`MIN_NEAR`)."""
    n = len(fold(secret))
    return 0 if n < MIN_NEAR else max(1, n // 6)


# Characters OCR confuses, folded to one representative (after case-folding).
_LOOKALIKE = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "!": "l", "5": "s",
                            "$": "s", "8": "b", "2": "z", "6": "b", "9": "g"})


def fold(text: str) -> str:
    """``text`` as compared with secrets and word lists: accents dropped, case-folded, OCR
    look-alikes folded, whitespace removed."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(plain.casefold().translate(_LOOKALIKE).split())


def _folded_with_index(text: str) -> tuple[str, list[int]]:
    """:func:`fold` of ``text`` and, for each folded character, its index in ``text``."""
    chars: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        for part in fold(ch):
            chars.append(part)
            index.append(i)
    return "".join(chars), index


def escaped_forms(secret: str) -> list[str]:
    """The spellings of ``secret`` that other writers make of it, itself first."""
    forms = [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             repr(secret)[1:-1], secret.replace('"', '""'), secret.replace("'", "''"),
             secret.replace("\\", "\\\\"), urllib.parse.quote(secret, safe=""),
             urllib.parse.quote_plus(secret)]
    out: list[str] = []
    for form in forms:
        if form and form not in out:
            out.append(form)
    return out


def _near_spans(folded: str, pattern: str, limit: int) -> list[tuple[int, int]]:
    """Spans of ``folded`` within ``limit`` edits of ``pattern`` (Sellers' algorithm: the match
    may start anywhere), as (start, end) in folded characters; the best ones, not overlapping."""
    m = len(pattern)
    prev_cost, prev_start = list(range(m + 1)), [0] * (m + 1)
    hits: list[tuple[int, int, int]] = []
    for i, ch in enumerate(folded, 1):
        cost, start = [0] * (m + 1), [i] * (m + 1)
        for j in range(1, m + 1):
            best, begin = prev_cost[j - 1] + (pattern[j - 1] != ch), prev_start[j - 1]
            if prev_cost[j] + 1 < best:  # a character of the text that the secret lacks
                best, begin = prev_cost[j] + 1, prev_start[j]
            if cost[j - 1] + 1 < best:  # a character of the secret that the text lacks
                best, begin = cost[j - 1] + 1, start[j - 1]
            cost[j], start[j] = best, begin
        if cost[m] <= limit:
            hits.append((cost[m], start[m], i))
        prev_cost, prev_start = cost, start
    chosen: list[tuple[int, int]] = []
    for _, s, e in sorted(hits, key=lambda h: (h[0], -(h[2] - h[1]))):
        if all(e <= a or s >= b for a, b in chosen):
            chosen.append((s, e))
    return chosen


def _hide_near(text: str, secret: str) -> str:
    limit = near_distance(secret)
    pattern = fold(secret)
    if limit == 0 or len(text) < len(pattern) - limit:
        return text
    folded, index = _folded_with_index(text)
    spans = sorted((index[s], index[e - 1] + 1) for s, e in _near_spans(folded, pattern, limit))
    for s, e in reversed(spans):
        text = text[:s] + SECRET + text[e:]
    return text


def _hide_prefix(text: str, forms: Iterable[str]) -> str:
    """Hide a start of a secret left right before an ellipsis by :func:`shorten`."""
    if ELLIPSIS not in text:
        return text
    parts = text.split(ELLIPSIS)
    for n, before in enumerate(parts[:-1]):
        for form in forms:
            for k in range(min(len(form), len(before)), MIN_PREFIX - 1, -1):
                if before.endswith(form[:k]):
                    parts[n] = before[:-k] + SECRET
                    break
            else:
                continue
            break
    return ELLIPSIS.join(parts)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every copy of every secret value replaced by :data:`SECRET`: exact,
    escaped, near (see the module notes) and cut-off copies."""
    if not text or not secrets:
        return text
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        forms = escaped_forms(secret)
        pieces = text.split(SECRET)  # what is hidden already stays as it is
        for i, piece in enumerate(pieces):
            exact = piece
            for form in forms:
                exact = exact.replace(form, SECRET)
            pieces[i] = SECRET.join(_hide_near(_hide_prefix(p, forms), secret)
                                    for p in exact.split(SECRET))
        text = SECRET.join(pieces)
    return text


def contains_secret(text: str, secrets: Sequence[str]) -> bool:
    """Whether :func:`redact` would hide anything of ``text``."""
    return redact(text, secrets) != text


# ---------------------------------------------------------------------------------------------
# Control characters

# C0 and C1 controls (newline and tab kept), DEL, and the bidirectional overrides that reorder
# what a terminal shows. ESC is one of them: an escape sequence loses its power when its ESC is
# shown as the four characters ``\x1b``.
_CONTROLS = r"\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_CONTROLS}]")
_CONTROL_OR_BREAK = re.compile(rf"[{_CONTROLS}\t\n]")


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` safe to print to a terminal or show in the interface: every control character
    but newline and tab (with ``one_line``, those too) is written out as an escape (ESC becomes
    ``\\x1b``), so a model answer or a task name cannot move the cursor, recolour, retitle or
    rewrite the screen, nor fake a line of its own."""
    return (_CONTROL_OR_BREAK if one_line else _CONTROL).sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
