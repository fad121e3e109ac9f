"""The labels of clicked elements: which ones are consequential, which are a bare "yes", and
how one OCR line that ran two buttons together is split back into elements.

The word lists live in ``data/labels.json`` (one list per language: en, de, fr, es, pt, it,
zh, ja), so they can be read and extended without touching code. Text and entries are compared
after :func:`words`: accents dropped, case folded, the characters OCR confuses folded to one
(0/o, 1/l/i, 5/s, ...), punctuation turned into spaces. Latin-script entries match whole words
("Sender" is not "send"); Chinese and Japanese entries match anywhere, as those scripts do not
separate words.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

from deskpilot.grounding.geometry import PixelBox
from deskpilot.grounding.ocr import TextLine

LANGUAGES = ("en", "de", "fr", "es", "pt", "it", "zh", "ja")
GAP_FACTOR = 0.8  # a gap between word boxes wider than this many line heights splits elements

# Folded like actions.text.fold, but keeping word boundaries.
_LOOKALIKE = str.maketrans({"0": "o", "1": "l", "i": "l", "5": "s"})
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def words(text: str) -> str:
    """``text`` folded for comparison with the lists: lower-case words separated by one space."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text)
                    if not unicodedata.combining(c))
    folded = plain.casefold().translate(_LOOKALIKE)
    return " ".join(re.sub(r"[^\w]+", " ", folded).split())


@dataclass(frozen=True, slots=True)
class _Lists:
    consequential: tuple[tuple[str, str], ...]  # (folded entry, entry as written)
    affirmative: frozenset[str]


@cache
def _lists() -> _Lists:
    raw = json.loads((resources.files("deskpilot.actions") / "data" / "labels.json")
                     .read_text(encoding="utf-8"))
    for name in ("consequential", "affirmative"):
        missing = [lang for lang in LANGUAGES if not raw[name].get(lang)]
        if missing:
            raise ValueError(f"labels.json: {name} has no words for {', '.join(missing)}")
    consequential = tuple((words(w), w) for lang in LANGUAGES for w in raw["consequential"][lang])
    affirmative = frozenset(words(w) for lang in LANGUAGES for w in raw["affirmative"][lang])
    return _Lists(consequential, affirmative)


def consequential(text: str) -> str | None:
    """The first consequential entry that ``text`` holds (as written in the list), or None."""
    folded = words(text)
    if not folded:
        return None
    padded = f" {folded} "
    for entry, written in _lists().consequential:
        if _CJK.search(entry):
            if entry in folded.replace(" ", ""):
                return written
        elif f" {entry} " in padded:
            return written
    return None


def affirmative(text: str) -> bool:
    """Whether ``text`` is only a yes, OK, continue or the like, in any listed language."""
    return words(text) in _lists().affirmative


@dataclass(frozen=True, slots=True)
class Element:
    """A piece of a line that stands alone on the screen: one button's label, say."""

    text: str
    box: PixelBox


def elements(line: TextLine) -> list[Element]:
    """The line split where its word boxes leave a gap wider than :data:`GAP_FACTOR` line
    heights ("OK    Cancel" read as one line becomes "OK" and "Cancel").

    Without word boxes the line is split at its spaces, each token placed in proportion to
    its characters; callers treat such guesses with the whole line in mind.
    """
    height = max(1, line.box[3] - line.box[1])
    if line.words:
        groups: list[list[tuple[str, PixelBox]]] = []
        for word in line.words:
            if groups and word.box[0] - groups[-1][-1][1][2] <= GAP_FACTOR * height:
                groups[-1].append((word.text, word.box))
            else:
                groups.append([(word.text, word.box)])
        return [Element(" ".join(t for t, _ in g),
                        (min(b[0] for _, b in g), min(b[1] for _, b in g),
                         max(b[2] for _, b in g), max(b[3] for _, b in g))) for g in groups]
    text = line.text
    x1, y1, x2, y2 = line.box
    per_char = (x2 - x1) / max(1, len(text))
    out = [Element(m.group(), (int(x1 + m.start() * per_char), y1,
                               int(x1 + m.end() * per_char), y2))
           for m in re.finditer(r"\S+", text)]
    return out or [Element(text, line.box)]


def guessed(line: TextLine) -> bool:
    """Whether :func:`elements` had to guess the line's geometry (no word boxes)."""
    return not line.words
