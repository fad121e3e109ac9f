"""Text that looks like a secret: known key formats, then any long token that looks random."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

_SECRET_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{22,})")),
    ("a GitLab token", re.compile(r"\bglpat-[\w-]{20,}")),
    ("an API secret key (sk-...)", re.compile(r"\bsk-[\w-]{20,}")),
    ("a Stripe key", re.compile(r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[\w-]{35}")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("a JSON web token", re.compile(r"\beyJ[\w-]{5,}\.eyJ[\w-]{5,}\.[\w-]*")),
)
_TOKEN_EDGES = "\"'`()[]{}<>,;."
# Tokens end at spaces, and at "=" or ":" followed by more text (``key=value``, ``Bearer:x``);
# a trailing "=" is base64 padding and stays.
_TOKEN_SPLIT = re.compile(r"\s+|[=:](?=[^=\s])")
MIN_TOKEN_CHARS = 20
MIN_TOKEN_ENTROPY = 3.5  # bits per character


def _entropy(text: str) -> float:
    """Shannon entropy of the characters of ``text``, in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _class_changes(text: str) -> int:
    """Adjacent letter/digit/case switches, not counting a capital starting a word.

    Random tokens switch often (about every other character in base62); file names, paths,
    URLs and e-mail addresses are runs of words and numbers that switch rarely, although their
    entropy is just as high.
    """
    def kind(ch: str) -> str | None:
        if ch.isdigit():
            return "d"
        if ch.isalpha():
            return "u" if ch.isupper() else "l"
        return None

    changes = 0
    for a, b in itertools.pairwise(text):
        ka, kb = kind(a), kind(b)
        if ka and kb and ka != kb and (ka, kb) != ("u", "l"):
            changes += 1
    return changes


def _random_looking(token: str) -> bool:
    return (len(token) >= MIN_TOKEN_CHARS
            and any(c.isalpha() for c in token) and any(c.isdigit() for c in token)
            and _entropy(token) >= MIN_TOKEN_ENTROPY
            and _class_changes(token) >= max(4, len(token) // 5))


def secret_spans(text: str) -> list[tuple[str, str]]:
    """The parts of ``text`` that look like secrets, as (what it looks like, the part)."""
    found = [(what, m.group()) for what, rx in _SECRET_FORMATS for m in rx.finditer(text)]
    for raw in _TOKEN_SPLIT.split(text):
        token = raw.strip(_TOKEN_EDGES)
        known = any(part in token or token in part for _, part in found)
        if not known and _random_looking(token):
            found.append(("a random key or token", token))
    return found
