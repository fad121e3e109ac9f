"""Find a piece of text among OCR lines: exact, then ignoring case, then fuzzy, never a guess."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from deskpilot.grounding.ocr import PixelBox, TextLine, box_centre_inside

How = Literal["exact", "casefold", "fuzzy"]

# Two fuzzy candidates this close in ratio are a tie: picking one would be a guess.
_FUZZY_TIE = 0.02
# Share of the smaller box inside the other above which two candidates are one place.
_SAME_PLACE_OVERLAP = 0.5
_SEEN = 5

# OCR confusions folded away before fuzzy comparison (on casefolded text): xcalc's "log" reads
# as "1og", "/tmp" as "/tnp"; digits for letters are the common ones on UI fonts.
_CONFUSIONS = str.maketrans({"0": "o", "1": "l", "|": "l", "5": "s"})

# Symbols that look alike on screen, and OCR's misreads of them, folded to one ASCII form in
# the folded tier (after NFKC, which turns full-width forms such as U+FF1D and U+FF08 into ASCII).
# Calculators label multiply with the multiplication sign or "*", divide with the division
# sign or "/", minus with U+2212 or "-"; the recognizer, trained mostly on Chinese, reads "="
# as the ideograph for two (U+4E8C) and "+" as the one for ten (U+5341).
LOOKALIKES: dict[str, str] = {
    "\N{MULTIPLICATION SIGN}": "*", "\N{MULTIPLICATION X}": "*",
    "\N{HEAVY MULTIPLICATION X}": "*", "\N{ASTERISK OPERATOR}": "*", "\N{DOT OPERATOR}": "*",
    "\N{MIDDLE DOT}": "*",
    "\N{DIVISION SIGN}": "/", "\N{DIVISION SLASH}": "/", "\N{FRACTION SLASH}": "/",
    "\N{MINUS SIGN}": "-", "\N{EN DASH}": "-", "\N{EM DASH}": "-", "\N{HYPHEN}": "-",
    "\N{NON-BREAKING HYPHEN}": "-", "\N{FIGURE DASH}": "-", "\N{CJK UNIFIED IDEOGRAPH-4E00}": "-",
    "\N{CJK UNIFIED IDEOGRAPH-4E8C}": "=", "\N{GETA MARK}": "=",
    "\N{CJK UNIFIED IDEOGRAPH-5341}": "+",
}
_LOOKALIKE_TABLE = str.maketrans(LOOKALIKES)


@dataclass(frozen=True, slots=True)
class TextMatch:
    """Where the query was found, what text was there, and how it matched."""

    text: str
    box: PixelBox
    how: How
    score: float


class TextLookupError(LookupError):
    """The query does not lead to exactly one place on the screen."""


class AmbiguousText(TextLookupError):
    """The query matches several places; ``candidates`` lists them, best first."""

    def __init__(self, message: str, candidates: tuple[TextMatch, ...]) -> None:
        super().__init__(message)
        self.candidates = candidates


class TextNotFound(TextLookupError):
    """The query matches nothing; ``near`` holds the closest texts that were read, with where
    they are (best first), and ``seen`` just their texts."""

    def __init__(self, message: str, near: tuple[TextMatch, ...]) -> None:
        super().__init__(message)
        self.near = near
        self.seen = tuple(m.text for m in near)


@dataclass(frozen=True, slots=True)
class _Candidate:
    text: str
    box: PixelBox
    words: int  # how many words the text has, to compare like with like
    line: int   # index of the line it came from
    whole_line: bool


def find_text(lines: Sequence[TextLine], query: str, *, region: PixelBox | None = None,
              fuzzy_cutoff: float = 0.75) -> TextMatch:
    """The one place where ``query`` is written, or AmbiguousText / TextNotFound.

    Candidates are whole lines, words and runs of consecutive words (boxed by their union),
    kept when their centre is inside ``region``. The first tier with a match wins: exact
    text, then folded text (:func:`fold_text`: case, full-width forms and lookalike symbols
    such as the multiplication sign for "*", whitespace collapsed), then fuzzy (difflib
    ratio at least ``fuzzy_cutoff`` against candidates with one word more or less, after
    folding common OCR confusions such as "1" for "l"). Candidates at one place count once.
    Several exact or folded places, or fuzzy ones within 0.02 of the best, raise AmbiguousText.
    """
    wanted = query.strip()
    if not wanted:
        raise ValueError("the text to find is empty")
    n_words = len(wanted.split())
    candidates = _candidates(lines, n_words + 1)
    if region is not None:
        candidates = [c for c in candidates if box_centre_inside(c.box, region)]

    exact = [(c, 1.0) for c in candidates if c.text.strip() == wanted]
    if exact:
        return _one(_dedupe(exact, "exact"), query, region)
    folded = fold_text(wanted)
    same = [(c, 1.0) for c in candidates if fold_text(c.text) == folded]
    if same:
        return _one(_dedupe(same, "casefold"), query, region)

    fuzzy_query = _fuzzy_key(wanted)
    scored = [(c, _ratio(fuzzy_query, c.text)) for c in candidates if abs(c.words - n_words) <= 1]
    fuzzy = _dedupe([(c, r) for c, r in scored if r >= fuzzy_cutoff], "fuzzy")
    if fuzzy:
        tied = tuple(m for m in fuzzy if fuzzy[0].score - m.score <= _FUZZY_TIE)
        if len(tied) == 1:
            return tied[0]
        raise AmbiguousText(_ambiguous_message(query, tied, region), tied)

    near = _closest(fuzzy_query, candidates)
    read = len({c.line for c in candidates})
    where = "on the screen" if region is None else f"in region {_fmt(region)}"
    closest = f"; closest: {', '.join(_quote(m.text) for m in near)}" if near else ""
    raise TextNotFound(f"no text {_quote(query)} {where} (read {read} text items{closest})",
                       near)


def _candidates(lines: Sequence[TextLine], max_words: int) -> list[_Candidate]:
    """Every line, plus each run of up to ``max_words`` consecutive words of each line."""
    out: list[_Candidate] = []
    for i, line in enumerate(lines):
        out.append(_Candidate(line.text, line.box, len(line.text.split()), i, True))
        words = line.words
        for start in range(len(words)):
            for stop in range(start + 1, min(start + max_words, len(words)) + 1):
                run = words[start:stop]
                text = " ".join(w.text for w in run)
                out.append(_Candidate(text, _union([w.box for w in run]), len(text.split()), i,
                                      False))
    return out


def _one(matches: list[TextMatch], query: str, region: PixelBox | None) -> TextMatch:
    if len(matches) == 1:
        return matches[0]
    found = tuple(sorted(matches, key=lambda m: (m.box[1], m.box[0])))  # reading order
    raise AmbiguousText(_ambiguous_message(query, found, region), found)


def _dedupe(scored: list[tuple[_Candidate, float]], how: How) -> list[TextMatch]:
    """One match per place, best first; at one place a whole line beats a run of its words."""
    # rapidocr's word boxes come from the recognizer's character columns and can clip the
    # first letter; a line's box is the detector's own, so it is kept when both say the same.
    ordered = sorted(scored, key=lambda cs: (-cs[1], not cs[0].whole_line,
                                             cs[0].box[1], cs[0].box[0]))
    kept: list[TextMatch] = []
    for c, score in ordered:
        if not any(_same_place(c.box, k.box) for k in kept):
            kept.append(TextMatch(c.text, c.box, how, score))
    return kept


def _closest(fuzzy_query: str, candidates: list[_Candidate]) -> tuple[TextMatch, ...]:
    """The texts most like the query, each once (at its first place in reading order)."""
    places: dict[str, PixelBox] = {}
    for c in sorted(candidates, key=lambda c: (c.box[1], c.box[0])):
        places.setdefault(c.text.strip(), c.box)
    places.pop("", None)
    scored = sorted(((_ratio(fuzzy_query, t), t) for t in places), key=lambda rt: (-rt[0], rt[1]))
    return tuple(TextMatch(t, places[t], "fuzzy", r) for r, t in scored[:_SEEN])


def fold_text(text: str) -> str:
    """``text`` as the folded tier compares it: NFKC, case folded, lookalike symbols made one,
    whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold()
                    .translate(_LOOKALIKE_TABLE).split())


def plain_symbols(text: str) -> str:
    """``text`` with full-width forms and lookalike symbols in their ASCII form, case kept:
    what a person would type for it (the multiplication sign becomes "*", and OCR's ideograph
    for two, read off an equals key, becomes "=")."""
    return unicodedata.normalize("NFKC", text).translate(_LOOKALIKE_TABLE)


def same_text(a: str, b: str) -> bool:
    """Whether two labels read the same once folded (U+00D7 and ``"*"`` do)."""
    return fold_text(a) == fold_text(b)



def _fuzzy_key(text: str) -> str:
    # "rn" read for "m" is folded too, after the per-character table.
    return fold_text(text).translate(_CONFUSIONS).replace("rn", "m")


def _ratio(fuzzy_query: str, text: str) -> float:
    return difflib.SequenceMatcher(None, fuzzy_query, _fuzzy_key(text)).ratio()


def _union(boxes: list[PixelBox]) -> PixelBox:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def _area(box: PixelBox) -> int:
    return max(box[2] - box[0], 0) * max(box[3] - box[1], 0)


def _same_place(a: PixelBox, b: PixelBox) -> bool:
    """Whether most of the smaller box lies inside the other (IoU alone misses a short word
    boxed tightly inside its padded one-word line: "L1" measured an IoU of exactly 0.5)."""
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    smaller = min(_area(a), _area(b))
    return smaller > 0 and inter / smaller > _SAME_PLACE_OVERLAP


def _ambiguous_message(query: str, found: tuple[TextMatch, ...], region: PixelBox | None) -> str:
    places = ", ".join(f"{_quote(m.text)} at {_fmt(m.box)}" for m in found)
    inside = "" if region is None else f" in region {_fmt(region)}"
    narrow = "a region" if region is None else "a smaller region"
    return f"{_quote(query)} matches {len(found)} places{inside}: {places}; narrow it with {narrow}"


def _fmt(box: PixelBox) -> str:
    return f"({box[0]},{box[1]})-({box[2]},{box[3]})"


def _quote(text: str) -> str:
    return f'"{text}"'


__all__ = ["LOOKALIKES", "AmbiguousText", "TextLookupError", "TextMatch", "TextNotFound",
           "find_text", "fold_text", "plain_symbols", "same_text"]
