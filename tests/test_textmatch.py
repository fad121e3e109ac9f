"""find_text on hand-made OCR lines: tiers, words inside lines, ambiguity, regions, misses."""

from __future__ import annotations

import pytest

from deskpilot.grounding.ocr import PixelBox, TextBox, TextLine
from deskpilot.grounding.textmatch import (
    AmbiguousText,
    TextLookupError,
    TextMatch,
    TextNotFound,
    find_text,
)


def line(text: str, box: PixelBox, words: list[tuple[str, PixelBox]] | None = None) -> TextLine:
    """A TextLine; with ``words`` given as (text, box) pairs."""
    return TextLine(text, box, 0.99, tuple(TextBox(t, b, 0.99) for t, b in words or []))


def word_line(box: PixelBox, text: str) -> TextLine:
    """A one-word line whose word box sits inside the line box, as rapidocr reports it."""
    x1, y1, x2, y2 = box
    return line(text, box, [(text, (x1 + 3, y1, x2 - 3, y2))])


# The xedit command bar as rapidocr reads it: one line, word boxes available.
XEDIT = line("Quit Save Load /tmp/notes.txt", (900, 150, 1157, 170), [
    ("Quit", (904, 150, 932, 170)),
    ("Save", (941, 150, 971, 170)),
    ("Load", (978, 150, 1008, 170)),
    ("/tmp/notes.txt", (1021, 150, 1156, 170)),
])
# A few xcalc buttons, with the OCR quirks seen on a real xcalc: "." read as "+", "log" as "1og".
CALC = [
    word_line((589, 216, 614, 236), "AC"),
    word_line((454, 247, 486, 266), "sin"),
    word_line((495, 274, 532, 299), "1og"),
    word_line((597, 491, 606, 503), "+"),
    word_line((509, 524, 517, 535), "+"),
    word_line((543, 517, 572, 536), "+/-"),
]
TAGS = line("No tags file found.", (899, 188, 1037, 207), [
    ("No", (903, 188, 916, 207)),
    ("tags", (925, 188, 951, 207)),
    ("file", (960, 188, 986, 207)),
    ("found.", (995, 188, 1037, 207)),
])
SCREEN = [XEDIT, *CALC, TAGS]


def test_exact_word_inside_a_line_gets_the_words_box() -> None:
    assert find_text(SCREEN, "Save") == TextMatch("Save", (941, 150, 971, 170), "exact", 1.0)


def test_outer_whitespace_of_the_query_is_ignored() -> None:
    assert find_text(SCREEN, "  Quit\n").box == (904, 150, 932, 170)


def test_casefold_and_collapsed_whitespace() -> None:
    match = find_text(SCREEN, "save")
    assert (match.text, match.how, match.score) == ("Save", "casefold", 1.0)
    assert find_text(SCREEN, "no   TAGS file found.").how == "casefold"


def test_multi_word_query_gets_the_union_of_its_word_boxes() -> None:
    assert find_text(SCREEN, "Save Load") == TextMatch(
        "Save Load", (941, 150, 1008, 170), "exact", 1.0)


def test_whole_line_matches_with_the_line_box() -> None:
    assert find_text(SCREEN, "No tags file found.").box == (899, 188, 1037, 207)


def test_fuzzy_prefix() -> None:
    match = find_text(SCREEN, "Sav")
    assert (match.text, match.box, match.how) == ("Save", (941, 150, 971, 170), "fuzzy")
    assert 0.75 <= match.score < 1


def test_fuzzy_folds_ocr_digit_for_letter_confusions() -> None:
    match = find_text(SCREEN, "log")  # xcalc's "log" button reads as "1og"
    assert (match.text, match.box, match.how) == ("1og", (495, 274, 532, 299), "fuzzy")


def test_fuzzy_cutoff_is_respected() -> None:
    with pytest.raises(TextNotFound):
        find_text(SCREEN, "Sav", fuzzy_cutoff=0.9)


def test_fuzzy_finds_a_word_inside_a_longer_line() -> None:
    match = find_text(SCREEN, "fond")
    assert (match.text, match.box, match.how) == ("found.", (995, 188, 1037, 207), "fuzzy")


def test_fuzzy_compares_only_with_a_similar_word_count() -> None:
    lines = [line("No tags file found.", (899, 188, 1037, 207))]
    # The ratio against the four-word line is 0.88, but one word is not four.
    with pytest.raises(TextNotFound):
        find_text(lines, "notagsfilefound")
    assert find_text(lines, "no tags file fond").how == "fuzzy"


def test_exact_beats_fuzzy() -> None:
    lines = [word_line((0, 0, 40, 20), "Saver"), word_line((100, 0, 140, 20), "Save")]
    assert find_text(lines, "Save").box == (100, 0, 140, 20)


def test_one_word_line_and_its_word_are_one_place_with_the_line_box() -> None:
    # rapidocr's word box of a one-word line can clip a letter; the detector's box is kept.
    assert find_text(CALC, "AC") == TextMatch("AC", (589, 216, 614, 236), "exact", 1.0)


def test_ambiguous_lists_every_place_in_reading_order() -> None:
    with pytest.raises(AmbiguousText) as info:
        find_text(SCREEN, "+")  # xcalc's "." button reads as "+" too
    assert [c.box for c in info.value.candidates] == [(597, 491, 606, 503), (509, 524, 517, 535)]
    assert str(info.value) == ('"+" matches 2 places: "+" at (597,491)-(606,503), '
                               '"+" at (509,524)-(517,535); narrow it with a region')
    assert isinstance(info.value, TextLookupError) and isinstance(info.value, LookupError)


def test_ambiguous_across_casefold() -> None:
    lines = [line("Save", (0, 0, 40, 20)), line("SAVE", (0, 100, 40, 120))]
    with pytest.raises(AmbiguousText) as info:
        find_text(lines, "save")
    assert [c.text for c in info.value.candidates] == ["Save", "SAVE"]
    assert all(c.how == "casefold" for c in info.value.candidates)


def test_region_disambiguates() -> None:
    match = find_text(SCREEN, "+", region=(380, 480, 700, 510))
    assert match.box == (597, 491, 606, 503)


def test_region_keeps_only_candidates_centred_inside() -> None:
    with pytest.raises(TextNotFound) as info:
        find_text(SCREEN, "Save", region=(380, 130, 700, 560))
    assert "in region (380,130)-(700,560)" in str(info.value)


def test_fuzzy_near_tie_at_two_places_is_ambiguous() -> None:
    lines = [line("Sade", (0, 0, 40, 20)), line("Sabe", (0, 100, 40, 120))]
    with pytest.raises(AmbiguousText) as info:
        find_text(lines, "Save")
    assert {c.text for c in info.value.candidates} == {"Sade", "Sabe"}


def test_fuzzy_clear_winner_is_taken() -> None:
    lines = [line("Saves", (0, 0, 40, 20)), line("Sa", (0, 100, 40, 120))]
    assert find_text(lines, "Save").text == "Saves"


def test_not_found_names_the_closest_texts() -> None:
    with pytest.raises(TextNotFound) as info:
        find_text(SCREEN, "Open file")
    err = info.value
    assert 0 < len(err.seen) <= 5
    assert str(err).startswith(f'no text "Open file" on the screen (read {len(SCREEN)} text '
                               "items; closest: ")
    with pytest.raises(TextNotFound) as info:
        find_text(SCREEN, "Sxvx")
    assert info.value.seen[0] == "Save"


def test_not_found_on_an_empty_screen() -> None:
    with pytest.raises(TextNotFound) as info:
        find_text([], "Save")
    assert info.value.seen == ()
    assert str(info.value) == 'no text "Save" on the screen (read 0 text items)'


@pytest.mark.parametrize("query", ["", "   ", "\n"])
def test_empty_query_is_refused(query: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        find_text(SCREEN, query)


# A label as the screen shows it (or as OCR misreads it), and what a task file writes for it.
LOOKALIKE_PAIRS = [
    ("\N{MULTIPLICATION SIGN}", "*"), ("\N{MULTIPLICATION X}", "*"),
    ("\N{HEAVY MULTIPLICATION X}", "*"), ("\N{ASTERISK OPERATOR}", "*"),
    ("\N{DIVISION SIGN}", "/"), ("\N{DIVISION SLASH}", "/"),
    ("\N{MINUS SIGN}", "-"), ("\N{EN DASH}", "-"), ("\N{EM DASH}", "-"),
    ("\N{CJK UNIFIED IDEOGRAPH-4E00}", "-"),          # OCR's "one" for a bar
    ("\N{CJK UNIFIED IDEOGRAPH-4E8C}", "="),          # OCR's "two" for an equals sign
    ("\N{CJK UNIFIED IDEOGRAPH-5341}", "+"),          # OCR's "ten" for a plus
    ("\N{FULLWIDTH EQUALS SIGN}", "="), ("\N{FULLWIDTH PLUS SIGN}", "+"),
    ("\N{FULLWIDTH LEFT PARENTHESIS}", "("), ("\N{FULLWIDTH RIGHT PARENTHESIS}", ")"),
    ("\N{FULLWIDTH ASTERISK}", "*"), ("\N{FULLWIDTH SOLIDUS}", "/"),
    ("\uff33\uff41\uff56\uff45", "Save"),             # full-width letters
    ("7 \N{MULTIPLICATION SIGN} 8", "7 * 8"), ("x\N{SUPERSCRIPT TWO}", "x2"),
]


@pytest.mark.parametrize(("shown", "written"), LOOKALIKE_PAIRS)
def test_a_lookalike_label_is_found_by_its_ascii_form_and_back(shown: str,
                                                                written: str) -> None:
    screen = [word_line((100, 100, 130, 120), shown), word_line((200, 100, 230, 120), "AC")]
    match = find_text(screen, written)
    assert (match.box, match.how) == ((100, 100, 130, 120), "casefold")
    back = find_text([word_line((100, 100, 130, 120), written)], shown)
    assert back.how == "casefold"


@pytest.mark.parametrize(("shown", "written"), [
    ("x", "*"), ("X", "\N{MULTIPLICATION SIGN}"), ("-", "="), ("+", "-"), ("/", "\\"),
    ("=", "\N{CJK UNIFIED IDEOGRAPH-5341}"), ("1", "-"),
])
def test_symbols_that_only_resemble_each_other_do_not_fold_together(shown: str,
                                                                    written: str) -> None:
    with pytest.raises(TextNotFound):
        find_text([word_line((100, 100, 130, 120), shown)], written, fuzzy_cutoff=1.0)
