"""Key names: one canonical spelling per key, the aliases models use, and chord parsing.

Canonical names are pyautogui's own key names, so the input device passes them through
untouched. The set is limited to keys that press a real key on X11: pyautogui lists names such
as ``volumeup`` or ``option`` that do nothing there, and ``f13``-``f24`` have no keycode in the
usual X keymaps (pyautogui then sends keycode 0), so those are left out.
"""

from __future__ import annotations

import difflib
import string
from types import MappingProxyType

MAX_CHORD_KEYS = 4

MODIFIERS = frozenset({"ctrl", "alt", "shift", "win"})

_NAMED_KEYS = frozenset({
    "enter", "esc", "tab", "space", "backspace", "delete", "insert",
    "home", "end", "pageup", "pagedown", "up", "down", "left", "right",
    "ctrl", "alt", "shift", "win",
    "capslock", "numlock", "scrolllock", "printscreen", "pause", "apps",
    *(f"f{n}" for n in range(1, 13)),
})

KEY_NAMES: frozenset[str] = frozenset(
    set(string.ascii_lowercase) | set(string.digits) | set(string.punctuation) | _NAMED_KEYS)
"""Every canonical key name."""


def _modifier_sides() -> dict[str, str]:
    # Left/right variants fold into the plain modifier: apps almost never tell them apart, and
    # one name per modifier keeps chords and the release bookkeeping simple.
    spellings = {
        "ctrl": ("ctrl", "control", "ctl"),
        "alt": ("alt", "option", "opt"),
        "shift": ("shift",),
        "win": ("win", "super", "meta", "cmd", "command", "windows"),
    }
    out: dict[str, str] = {}
    for canonical, names in spellings.items():
        for name in names:
            if name != canonical:
                out[name] = canonical
            for side in ("left", "right"):
                out[name + side] = canonical
                out[side + name] = canonical
                out[side[0] + name] = canonical
                out[name + side[0]] = canonical  # X keysym style: Control_L -> controll
    return out


ALIASES: MappingProxyType[str, str] = MappingProxyType({
    **_modifier_sides(),
    # Whitespace characters and the names models (and xdotool) use for them.
    " ": "space", "\n": "enter", "\r": "enter", "\t": "tab",
    "spacebar": "space",
    "return": "enter", "ret": "enter", "newline": "enter", "kpenter": "enter",
    "escape": "esc",
    "bksp": "backspace", "bs": "backspace", "back": "backspace",
    "del": "delete", "ins": "insert",
    "pgup": "pageup", "prior": "pageup",
    "pgdn": "pagedown", "pgdown": "pagedown", "pagedn": "pagedown", "next": "pagedown",
    "arrowup": "up", "uparrow": "up",
    "arrowdown": "down", "downarrow": "down",
    "arrowleft": "left", "leftarrow": "left",
    "arrowright": "right", "rightarrow": "right",
    "caps": "capslock", "num": "numlock", "scroll": "scrolllock",
    "print": "printscreen", "prtsc": "printscreen", "prtscr": "printscreen",
    "prntscrn": "printscreen", "sysrq": "printscreen",
    "break": "pause",
    "menu": "apps", "contextmenu": "apps", "application": "apps",
    # Punctuation by name (X keysym names included: models trained on xdotool use them).
    "plus": "+", "minus": "-", "dash": "-", "hyphen": "-", "equals": "=", "equal": "=",
    "slash": "/", "backslash": "\\", "comma": ",", "period": ".", "dot": ".",
    "semicolon": ";", "colon": ":", "quote": "'", "apostrophe": "'", "doublequote": '"',
    "quotedbl": '"', "backtick": "`", "backquote": "`", "grave": "`", "tilde": "~",
    "asciitilde": "~", "bracketleft": "[", "leftbracket": "[", "bracketright": "]",
    "rightbracket": "]", "braceleft": "{", "braceright": "}", "parenleft": "(",
    "parenright": ")", "asterisk": "*", "star": "*", "underscore": "_", "question": "?",
    "questionmark": "?", "exclam": "!", "exclamation": "!", "at": "@", "hash": "#",
    "numbersign": "#", "dollar": "$", "percent": "%", "caret": "^", "asciicircum": "^",
    "ampersand": "&", "pipe": "|", "bar": "|", "less": "<", "lessthan": "<",
    "greater": ">", "greaterthan": ">",
})
"""Alternative spellings (compacted: lower case, no spaces, '_' or '-') mapped to canonical."""

_HINT = ("use names like enter, esc, tab, ctrl, alt, shift, a-z, 0-9, f1-f12, up, down, "
         "pageup (see docs)")


class UnknownKeyError(ValueError):
    """A key name that is neither canonical nor a known alias."""

    def __init__(self, name: str, suggestion: str | None = None) -> None:
        self.name = name
        self.suggestion = suggestion
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        super().__init__(f"unknown key {name!r}{hint}; {_HINT}")


class ChordError(ValueError):
    """A key chord that is malformed (empty, dangling '+', duplicate or misplaced keys)."""


def _lookup(name: str) -> str | None:
    if len(name) == 1:
        key = name.lower() if name.isalpha() else name
        return key if key in KEY_NAMES else ALIASES.get(key)
    folded = name.strip().lower()
    if len(folded) == 1:
        return _lookup(folded)
    compact = folded.replace(" ", "").replace("_", "").replace("-", "")
    if compact in KEY_NAMES:
        return compact
    return ALIASES.get(compact)


def _suggest(name: str) -> str | None:
    folded = name.strip().lower()
    # "ctrl-s" or "ctrl s": the model meant a chord but used the wrong separator.
    for sep in ("-", " "):
        parts = [p for p in folded.split(sep) if p]
        if len(parts) > 1:
            keys = [_lookup(p) for p in parts]
            if all(keys):
                return "+".join(k for k in keys if k)
    compact = folded.replace(" ", "").replace("_", "").replace("-", "")
    if len(compact) < 2:
        return None
    candidates = sorted({n for n in KEY_NAMES if len(n) > 1} | {a for a in ALIASES if len(a) > 1})
    close = difflib.get_close_matches(compact, candidates, n=1)
    if not close:
        return None
    return close[0] if close[0] in KEY_NAMES else ALIASES[close[0]]


def canonical_key(name: str) -> str:
    """The canonical name of one key, case-insensitively; raises :class:`UnknownKeyError`."""
    # Non-ASCII names are rejected outright: str.lower() maps e.g. the Kelvin sign to 'k'.
    key = _lookup(name) if name and name.isascii() else None
    if key is None:
        raise UnknownKeyError(name, _suggest(name) if name.isascii() else None)
    return key


def is_modifier(name: str) -> bool:
    """True when the name (any accepted spelling) is ctrl, alt, shift or win."""
    key = _lookup(name) if name and name.isascii() else None
    return key in MODIFIERS


def _split_chord(text: str) -> list[str]:
    # A '+' is both the separator and a key: where a key is expected, a '+' is the key itself.
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            if not parts:
                raise ChordError(
                    "empty key chord; give a key such as 'enter' or a chord such as 'ctrl+s'")
            raise ChordError(
                f"key chord {text!r} ends with '+'; to press the plus key write "
                f"{'+'.join([*parts, 'plus'])!r}")
        if text[i] == "+":
            parts.append("+")
            i += 1
        else:
            end = text.find("+", i)
            end = n if end == -1 else end
            parts.append(text[i:end].strip())
            i = end
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return parts
        if text[i] != "+":
            raise ChordError(f"key chord {text!r}: keys must be joined with '+', as in 'ctrl+s'")
        i += 1


def parse_chord(text: str) -> tuple[str, ...]:
    """Parse ``"ctrl+shift+t"`` into canonical names: modifiers first, then at most one key."""
    keys = tuple(canonical_key(part) for part in _split_chord(text))
    if len(keys) > MAX_CHORD_KEYS:
        raise ChordError(f"key chord {text!r} has {len(keys)} keys; at most {MAX_CHORD_KEYS}")
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ChordError(f"key {key!r} appears twice in key chord {text!r}")
        seen.add(key)
    misplaced = [k for k in keys[:-1] if k not in MODIFIERS]
    if misplaced:
        raise ChordError(
            f"key chord {text!r}: a chord is modifiers (ctrl, alt, shift, win) followed by one "
            f"key, but {misplaced[0]!r} comes before the last key; press keys one at a time "
            "with separate actions")
    return keys
