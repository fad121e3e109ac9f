"""Key names and chords: canonical spellings, aliases and the chord rules."""

from __future__ import annotations

import ast
import importlib.util
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deskpilot.actions.keys import (
    ALIASES,
    KEY_NAMES,
    MAX_CHORD_KEYS,
    MODIFIERS,
    ChordError,
    UnknownKeyError,
    canonical_key,
    is_modifier,
    parse_chord,
)


def _pyautogui_key_names() -> set[str]:
    """pyautogui's KEY_NAMES, read from its source: importing it on Linux opens the display."""
    spec = importlib.util.find_spec("pyautogui")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "KEY_NAMES"):
            return set(ast.literal_eval(node.value))
    raise AssertionError("KEY_NAMES not found in pyautogui's source")


def test_every_canonical_name_is_a_pyautogui_key() -> None:
    assert not KEY_NAMES - _pyautogui_key_names()


def test_table_covers_the_basics() -> None:
    basics = {*string.ascii_lowercase, *string.digits, *"+-=/*.,;'[]\\`",
              "enter", "esc", "tab", "space", "backspace", "delete", "insert", "home", "end",
              "pageup", "pagedown", "up", "down", "left", "right", "ctrl", "alt", "shift", "win",
              "capslock", "printscreen", "apps", *(f"f{n}" for n in range(1, 13))}
    assert not basics - KEY_NAMES
    assert sorted(MODIFIERS) == ["alt", "ctrl", "shift", "win"]


def test_names_that_do_nothing_on_x11_are_not_canonical() -> None:
    # f13-f24 have no keycode in the usual X keymaps; option/command are None on X11.
    for name in ("f13", "f24", "option", "command", "volumeup", "browserback"):
        assert name not in KEY_NAMES


def test_aliases_point_at_canonical_names() -> None:
    assert set(ALIASES.values()) <= KEY_NAMES
    assert not set(ALIASES) & KEY_NAMES


@pytest.mark.parametrize(("name", "key"), [
    ("enter", "enter"), ("Enter", "enter"), ("RETURN", "enter"), ("Return", "enter"),
    ("\n", "enter"), ("esc", "esc"), ("Escape", "esc"), ("del", "delete"), ("Delete", "delete"),
    ("ins", "insert"), ("pgup", "pageup"), ("Page_Up", "pageup"), ("page up", "pageup"),
    ("prior", "pageup"), ("PgDn", "pagedown"), ("page_down", "pagedown"), ("Next", "pagedown"),
    ("ArrowUp", "up"), ("arrow_up", "up"), ("arrowleft", "left"), ("Right", "right"),
    ("control", "ctrl"), ("ctl", "ctrl"), ("Control_L", "ctrl"), ("ctrlright", "ctrl"),
    ("super", "win"), ("Super_L", "win"), ("meta", "win"), ("cmd", "win"), ("command", "win"),
    ("Windows", "win"), ("win", "win"), ("option", "alt"), ("Alt_R", "alt"),
    ("spacebar", "space"), (" ", "space"), ("Space", "space"), ("bksp", "backspace"),
    ("BackSpace", "backspace"), ("\t", "tab"), ("Tab", "tab"),
    ("plus", "+"), ("+", "+"), ("minus", "-"), ("-", "-"), ("equals", "="), ("equal", "="),
    ("slash", "/"), ("backslash", "\\"), ("grave", "`"), ("apostrophe", "'"),
    ("bracketleft", "["), ("_", "_"),
    ("A", "a"), ("z", "z"), ("7", "7"), ("F5", "f5"), ("f12", "f12"), (" f1 ", "f1"),
    ("menu", "apps"), ("Print", "printscreen"), ("prtsc", "printscreen"), ("caps_lock", "capslock"),
])
def test_canonical_key(name: str, key: str) -> None:
    assert canonical_key(name) == key


@pytest.mark.parametrize("name", ["", "foo", "f13", "f25", "ctrl+s", "\u212a", "é", "  ", "\x00"])
def test_unknown_keys_are_rejected_with_a_hint(name: str) -> None:
    with pytest.raises(UnknownKeyError) as info:
        canonical_key(name)
    message = str(info.value)
    assert "use names like enter, esc, tab" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("name", "suggestion"), [
    ("entr", "enter"), ("escap", "esc"), ("pagedwn", "pagedown"), ("bakspace", "backspace"),
    ("ctrl-s", "ctrl+s"), ("ctrl shift", "ctrl+shift"),
])
def test_unknown_key_suggests_the_closest_name(name: str, suggestion: str) -> None:
    with pytest.raises(UnknownKeyError) as info:
        canonical_key(name)
    assert info.value.suggestion == suggestion
    assert f"did you mean {suggestion!r}" in str(info.value)


def test_unknown_key_without_a_close_name_suggests_nothing() -> None:
    with pytest.raises(UnknownKeyError) as info:
        canonical_key("xyzzyq")
    assert info.value.suggestion is None
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(("text", "keys"), [
    ("ctrl+shift+t", ("ctrl", "shift", "t")),
    ("Ctrl + S", ("ctrl", "s")),
    ("  ctrl+s  ", ("ctrl", "s")),
    ("+", ("+",)),
    (" + ", ("+",)),
    ("ctrl++", ("ctrl", "+")),
    ("ctrl + +", ("ctrl", "+")),
    ("ctrl+plus", ("ctrl", "+")),
    ("ctrl+minus", ("ctrl", "-")),
    ("ctrl+-", ("ctrl", "-")),
    ("enter", ("enter",)),
    ("Return", ("enter",)),
    ("alt+F4", ("alt", "f4")),
    ("super", ("win",)),
    ("shift+ctrl", ("shift", "ctrl")),
    ("Control_L+Alt_L+Delete", ("ctrl", "alt", "delete")),
    ("ctrl+alt+shift+t", ("ctrl", "alt", "shift", "t")),
    ("ctrl+page down", ("ctrl", "pagedown")),
    ("shift+Tab", ("shift", "tab")),
])
def test_parse_chord(text: str, keys: tuple[str, ...]) -> None:
    assert parse_chord(text) == keys


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty key chord"),
    ("   ", "empty key chord"),
    ("ctrl+", "ends with '+'; to press the plus key write 'ctrl+plus'"),
    ("ctrl+shift+", "write 'ctrl+shift+plus'"),
    ("ctrl+ctrl+a", "appears twice"),
    ("ctrl+control+a", "appears twice"),
    ("a+b", "a chord is modifiers"),
    ("ctrl+a+b", "a chord is modifiers"),
    ("ctrl+alt+shift+win+a", f"at most {MAX_CHORD_KEYS}"),
    ("ctrl++s", "joined with '+'"),
    ("+a", "joined with '+'"),
    ("+++", "appears twice"),
])
def test_bad_chords_give_clear_errors(text: str, fragment: str) -> None:
    with pytest.raises(ChordError, match=None) as info:
        parse_chord(text)
    assert fragment in str(info.value)


def test_chord_with_an_unknown_key_names_it() -> None:
    with pytest.raises(UnknownKeyError) as info:
        parse_chord("ctrl+entr")
    assert info.value.name == "entr"
    assert info.value.suggestion == "enter"


@pytest.mark.parametrize(("name", "expected"), [
    ("ctrl", True), ("Control", True), ("alt", True), ("shift", True), ("win", True),
    ("super", True), ("a", False), ("enter", False), ("foo", False), ("", False),
])
def test_is_modifier(name: str, expected: bool) -> None:
    assert is_modifier(name) is expected


_names = sorted(KEY_NAMES)
_spellings = sorted(set(ALIASES) | KEY_NAMES)


@given(st.lists(st.sampled_from(sorted(MODIFIERS)), unique=True, max_size=3),
       st.sampled_from(_names))
def test_modifiers_then_a_key_round_trip(mods: list[str], key: str) -> None:
    if key in mods:
        return
    assert parse_chord("+".join([*mods, key])) == (*mods, key)


@given(st.text(max_size=40))
def test_parse_chord_returns_valid_chords_or_raises_value_error(text: str) -> None:
    try:
        keys = parse_chord(text)
    except ValueError:
        return
    assert 1 <= len(keys) <= MAX_CHORD_KEYS
    assert set(keys) <= KEY_NAMES
    assert len(set(keys)) == len(keys)
    assert set(keys[:-1]) <= MODIFIERS


@given(st.sampled_from(_spellings))
def test_every_spelling_is_accepted_in_any_case(name: str) -> None:
    key = canonical_key(name)
    assert key in KEY_NAMES
    if len(name) > 1:
        assert canonical_key(name.upper()) == key
