"""Property-based fuzzing of the parser and the validator (matrix part (a): bad model outputs).

The parser must turn *any* text into either one complete, frozen action that survives a
serialize/parse round trip, or one :class:`ActionError` whose message is a single short line the
model can act on; never any other exception. The validator must turn any valid action on any
monitor layout into a :class:`Resolved` whose points all lie on the monitor and clear of its
corners, or reject it with such a message; never half an action.

Inputs come from three strategies: arbitrary text (control characters and, sometimes, replies of
up to ~200k characters); near misses (valid actions generated from the real schema in
``actions.schema.fields_of``, then broken one way or several: a field dropped, added, retyped,
nested, set to NaN / inf / -0 / 1e308, a box reversed or out of range, the text truncated, a key
duplicated, prose or a second object after it); and pathological JSON (deep nesting, huge number
literals) that stresses the decoder itself.

Each property runs :data:`FUZZ_EXAMPLES` examples. The strategies draw few values per example on
purpose: hostile values come from pools rather than deep recursive strategies, and structural
choices (kind, field, kind of damage) from one seeded ``random.Random`` per example, while box
coordinates, strings and JSON values stay Hypothesis draws. Hypothesis's own cost per draw
dominates here, and the whole file must stay under a minute on two cores.

The fuzzer found four parser bugs (deep nesting and 5000-digit integers escaping as other
exceptions; unbounded action and field names in messages); they are fixed, and the cases that
showed them are kept as plain tests.
"""

from __future__ import annotations

import json
import math
import random
import unicodedata
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from deskpilot.actions.keys import ALIASES, KEY_NAMES, MODIFIERS
from deskpilot.actions.parse import ActionError, parse_action
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.schema import FieldSpec, fields_of
from deskpilot.actions.types import (
    ACTION_NAMES,
    ACTION_TYPES,
    AnyAction,
    Drag,
    Hold,
    Key,
    Type,
    tag_of,
)
from deskpilot.actions.validate import CORNER_MARGIN, ActionRejected, validate
from deskpilot.grounding.geometry import Region, ScreenGeometry, View, box_to_screen

FUZZ_EXAMPLES = 10_000
"""Examples per property (quoted by the docs)."""

MAX_ERROR_CHARS = 300
"""The longest error message the model should ever be shown."""

FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

_BY_TAG = {tag_of(cls): cls for cls in ACTION_TYPES}
_POINTER_COUNT = {"click": 1, "move": 1, "scroll": 1, "drag": 2}


# ------------------------------------------------------------------ shared checks

def _check_message(exc: ActionError) -> None:
    """A non-empty, single-line, short message."""
    message = str(exc)
    assert message.strip(), "empty error message"
    assert len(message.splitlines()) == 1, f"multi-line error message: {message[:200]!r}"
    assert len(message) <= MAX_ERROR_CHARS, f"{len(message)}-char error: {message[:200]!r}..."


def _check_action(action: object) -> None:
    """A complete action: one of the action types, frozen, and round-trips unchanged."""
    assert type(action) in ACTION_TYPES
    assert isinstance(action, BaseModel)
    assert action.model_config.get("frozen") is True
    with pytest.raises(ValidationError):
        action.action = "wait"  # type: ignore[misc]
    again = parse_action(json.dumps(action.model_dump()))
    assert again == action
    assert type(again) is type(action)


def _parse_outcome(text: str, *, messages: bool = True) -> AnyAction | None:
    """Parse; only ActionError may escape. Returns the action, or None when it was rejected."""
    try:
        action = parse_action(text)
    except ActionError as exc:
        if messages:
            _check_message(exc)
        else:
            assert str(exc).strip(), "empty error message"
        return None
    _check_action(action)
    return action


# ------------------------------------------------------------------ valid actions from the schema

# Structural choices (which kind, which field, which damage) come from one seeded Random per
# example: one draw instead of ten. Values (box coordinates, strings, hostile JSON values) are
# still Hypothesis draws, with its edge cases and shrinking.
_seeds = st.integers(0, 2**32 - 1)


_norm = st.floats(0.0, 1.0)
_EDGE_BOXES = ((0, 0, 0, 0), (1, 1, 1, 1), (0, 0, 1, 1), (0.5, 0.5, 0.5, 0.5), (0, 1, 0, 1),
               (1, 0, 1, 0), (0.0001, 0.0001, 0.0002, 0.0002), (0.9999, 0.9999, 1, 1),
               (0.499, 0.499, 0.501, 0.501), (0, 0.5, 0, 0.5), (5e-324, 0, 5e-324, 1e-300))
_short_text = {0: st.text(max_size=12), 1: st.text(min_size=1, max_size=12)}
_floats = {(0.0, 30.0): st.floats(0.0, 30.0)}  # every float field's bounds (checked below)


def _draw_box(draw: st.DrawFn, rng: random.Random) -> list[float]:
    if rng.random() < 0.25:
        return list(rng.choice(_EDGE_BOXES))
    x1, x2 = sorted((draw(_norm), draw(_norm)))
    y1, y2 = sorted((draw(_norm), draw(_norm)))
    return [x1, y1, x2, y2]


def _draw_value(draw: st.DrawFn, rng: random.Random, spec: FieldSpec) -> Any:
    """A valid value for one field, drawn from its bounds in the schema."""
    low, high = spec.low or 0, spec.high or 0
    match spec.kind:
        case "literal":
            return rng.choice(spec.choices)
        case "box":
            return _draw_box(draw, rng)
        case "int":
            return rng.choice((int(low), int(high), rng.randint(int(low), int(high))))
        case "float":
            return draw(_floats[(float(low), float(high))])
        case _:
            limit = spec.max_len or 200
            if rng.random() < 0.25:  # exactly at the limit: ASCII, accented, astral, escapes
                return rng.choice(("x", "é", "\U0001f600", '"', "\\", "\n", "\x00")) * limit
            return draw(_short_text[min(spec.min_len, 1)])


_FIELDS = {cls: fields_of(cls) for cls in ACTION_TYPES}
assert all(min(s.min_len, 1) == s.min_len for f in _FIELDS.values() for s in f)
assert all((float(s.low or 0), float(s.high or 0)) in _floats
           for f in _FIELDS.values() for s in f if s.kind == "float")


@st.composite
def action_dicts(draw: st.DrawFn, kinds: Sequence[type] = ACTION_TYPES,
                 special: dict[str, st.SearchStrategy[Any]] | None = None) -> dict[str, Any]:
    """A valid action as a JSON-ready dict, every field drawn from the schema's own bounds.

    Optional fields are left out half the time. ``special`` maps ``kind.field`` to a strategy
    that replaces the schema's (realistic key chords for the validator, say).
    """
    rng = random.Random(draw(_seeds))
    cls = rng.choice(kinds)
    tag = tag_of(cls)
    data: dict[str, Any] = {}
    for spec in _FIELDS[cls]:
        if not spec.required and rng.random() < 0.5:
            continue
        custom = (special or {}).get(f"{tag}.{spec.name}")
        data[spec.name] = draw(custom) if custom is not None else _draw_value(draw, rng, spec)
    return data


valid_dicts = action_dicts()

# ------------------------------------------------------------------ near misses

_SPECIAL_NUMBERS = (math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, -1, -0.5,
                    1.0000001, 1.5, 2, 26, 1e9, 2**31, 2**63, -(2**63), 10**30, True, False)
_HOSTILE_VALUES = (
    None, "", " ", "0.5", "left", "click", "ctrl+alt+delete", "\n", "\x00", "\u2028", "x" * 1000,
    [], {}, [0.1, 0.2], [0.1, 0.2, 0.3, 0.4, 0.5], [[0.1, 0.2, 0.3, 0.4]], ["0", "0", "1", "1"],
    {"x": 0.5, "y": 0.5}, {"box": [0.1, 0.1, 0.2, 0.2]}, [None] * 4, [math.nan] * 4,
    [[[[[[]]]]]], {"a": {"b": {"c": {}}}}, list(range(100)), "[0.1, 0.1, 0.2, 0.2]",
    *_SPECIAL_NUMBERS)
_json_values = st.one_of(st.sampled_from(_HOSTILE_VALUES), st.integers(), st.floats(),
                         st.text(max_size=8))
# Keys a model might invent, plus hostile ones: line breaks, long names.
_keys = st.one_of(st.text(max_size=8), st.sampled_from(
    ("x", "y", "coordinate", "box ", "Action", "to", "a\nb", "a\u2028b", "\r\n", "key" * 40,
     "k" * 2000, "é" * 300)))
_tags = st.one_of(st.sampled_from((*ACTION_NAMES, "Click", "tap", "press", " click", "type_text",
                                   "screenshot", "", "x" * 5000, "a\nb")), _json_values)
_MUTATIONS = ("drop", "add", "retype", "special", "reverse", "range", "nest", "tag")


def _mutate(data: dict[str, Any], kind: str, draw: st.DrawFn, rng: random.Random) -> None:
    key = rng.choice([*data, "action"])
    boxes = [k for k in ("box", "to_box") if isinstance(data.get(k), list) and len(data[k]) == 4
             and all(isinstance(v, int | float) for v in data[k])]
    name = rng.choice(boxes) if boxes else None
    if kind == "drop":
        data.pop(key, None)
    elif kind == "add":
        data[draw(_keys)] = draw(_json_values)
    elif kind == "retype":
        data[key] = draw(_json_values)
    elif kind == "special" and name is not None and rng.random() < 0.5:
        box = list(data[name])
        box[rng.randrange(4)] = rng.choice(_SPECIAL_NUMBERS)
        data[name] = box
    elif kind == "special":
        data[key] = rng.choice(_SPECIAL_NUMBERS)
    elif kind == "reverse" and name is not None:
        x1, y1, x2, y2 = data[name]
        data[name] = rng.choice([[x2 + 0.01, y1, x1, y2], [x1, y2 + 0.01, x2, y1],
                                    [x2 + 0.1, y2 + 0.1, x1, y1], [x1, y1, x2],
                                    [x1, y1, x2, y2, 0.5], []])
    elif kind == "range" and name is not None:
        box = list(data[name])
        box[rng.randrange(4)] = rng.choice((-1e-9, -0.01, -1, 1.0000001, 1.01, 2, 100, 1e308,
                                            -1e308))
        data[name] = box
    elif kind == "nest":
        data[key] = rng.choice([{"value": data.get(key)}, [data.get(key)],
                                {"x": 0.5, "y": 0.5}, [[0.1, 0.1], [0.2, 0.2]]])
    elif kind == "tag":
        data["action"] = draw(_tags)


_DUMPS: tuple[dict[str, Any], ...] = ({}, {"indent": 2}, {"ensure_ascii": False},
                                       {"separators": (",", ":")})
_TEXT_DAMAGE = ("none", "none", "duplicate", "trailing", "two", "truncate", "prefix", "flip",
                "ws")
_TRAILING = ("", " ", "\n", "```", " I will click it.", "\x00", ",", "}", "]",
             "\n\nReasoning: ...")
_PREFIXES = ("```json\n", "Action: ", "\ufeff", "<think></think>", "json", "\x00", "[", "{{")
_LEADING_SPACE = (" ", "\n", "\t", "\r\n", "\u3000", "\x0b", "\x1c")


@st.composite
def near_misses(draw: st.DrawFn) -> tuple[str, dict[str, Any] | None]:
    """A reply as raw text, and the dict it encodes when that is an undamaged valid action."""
    data: dict[str, Any] = draw(valid_dicts)
    intact: dict[str, Any] | None = dict(data)
    rng = random.Random(draw(_seeds))
    for _ in range(rng.randrange(4)):
        _mutate(data, rng.choice(_MUTATIONS), draw, rng)
        intact = None
    text = json.dumps(data, **rng.choice(_DUMPS))
    damage = rng.choice(_TEXT_DAMAGE)
    if damage != "none":
        intact = None
    if damage == "duplicate":
        dup = f"{json.dumps(rng.choice([*data, 'action']))}: {json.dumps(draw(_json_values))}"
        text = text[:-1] + ", " + dup + "}" if rng.random() < 0.5 else "{" + dup + ", " + text[1:]
    elif damage == "trailing":
        text += rng.choice(_TRAILING)
    elif damage == "two":
        text += rng.choice(["", " ", "\n", ", "]) + json.dumps(draw(valid_dicts))
    elif damage == "truncate":
        text = text[:rng.randrange(len(text))]
    elif damage == "prefix":
        text = rng.choice(_PREFIXES) + text
    elif damage == "flip":
        i = rng.randrange(len(text))
        text = text[:i] + draw(st.characters()) + text[i + 1:]
    elif damage == "ws":
        text = rng.choice(_LEADING_SPACE) + text
    return text, intact


@st.composite
def _huge_text(draw: st.DrawFn) -> str:
    """Replies of thousands to ~200k characters, built by repetition (cheap to generate)."""
    unit = draw(st.text(min_size=1, max_size=6))
    head = draw(st.sampled_from(["", "{", '{"action": "type", "text": "', " " * 10]))
    return head + unit * draw(st.integers(1, 200_000 // len(unit)))


any_text = st.one_of(
    st.text(),
    st.text(st.characters(codec=None, categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cs"]),
            max_size=20),
    st.text("{}[]\":,0123456789.-eE actionboxNaInfity\\u\n\t", max_size=200),
    _huge_text())


@st.composite
def pathological(draw: st.DrawFn) -> str:
    """JSON within the reply length limit that stresses the decoder itself."""
    depth = draw(st.integers(1, 6000))
    digits = "9" * draw(st.integers(1, 19_000))
    match draw(st.sampled_from(["lists", "objects", "open", "int", "float", "exp"])):
        case "lists":
            return '{"action": "click", "box": ' + "[" * depth + "]" * depth + "}"
        case "objects":
            return '{"action": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
        case "open":
            return "{" + '"x": [' * depth  # never closed
        case "int":
            return ('{"action": "scroll", "box": [0, 0, 1, 1], "direction": "up", "amount": '
                    + digits + "}")
        case "float":
            return '{"action": "wait", "seconds": 0.' + digits + "}"
        case _:
            return '{"action": "wait", "seconds": 1e' + digits[:6] + "}"


# ------------------------------------------------------------------ parser properties

@FUZZ
@given(any_text)
def test_parser_on_arbitrary_text(text: str) -> None:
    _parse_outcome(text)


@FUZZ
@given(st.one_of(near_misses(), pathological().map(lambda text: (text, None))))
def test_parser_errors_are_one_short_line_and_pathological_json_is_rejected(
        case: tuple[str, dict[str, Any] | None]) -> None:
    text, intact = case
    action = _parse_outcome(text)
    if intact is not None:
        assert action == _BY_TAG[intact["action"]].model_validate(intact)


@pytest.mark.parametrize("text", [
    json.dumps({"action": "x" * 400}),
    json.dumps({"action": "wait", "a\nb": 1}),
    json.dumps({"action": "wait", "k" * 400: 1}),
    '{"action": "click", "box": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"action": "wait", "seconds": ' + "9" * 5000 + "}",
], ids=["long-unknown-action", "newline-in-extra-key", "long-extra-key", "deep-nesting",
        "5000-digit-int"])
def test_parser_bugs_the_fuzzer_found_stay_fixed(text: str) -> None:
    _parse_outcome(text)


# ------------------------------------------------------------------ validator properties

_SIZES = (1, 2, 3, 5, 6, 7, 8, 9, 16, 599, 600, 768, 800, 1001, 1024, 1080, 1366, 1440, 1920,
          2160, 2560, 3840, 4321, 5120, 7680, 15360, 32767, 40000)
_ORIGINS = (0, 0, 0, 1, -1, 2, -2, 3, -3, 1920, -1920, -1440, -3840, 2560, -40000, 40000, 12345)


_SCALES = (1.0, 1.25, 1.5, 2.0, 1.1, 4 / 3, 1.75, 2.5, 3.0)
_IMAGES = ((1, 1), (7, 3), (448, 448), (896, 504), (1280, 720), (1344, 756), (4096, 4096))
_LAYOUTS = math.prod(map(len, (_ORIGINS, _ORIGINS, _SIZES, _SIZES, _SCALES, _IMAGES))) * 2


@st.composite
def views(draw: st.DrawFn) -> View:
    """A monitor (odd origins, sizes and scales) and the part of it the model saw.

    One draw picks the whole layout (mixed-radix over the pools; it shrinks towards a 1x1
    monitor at the origin); the crop, when there is one, comes from the same number.
    """
    number = draw(st.integers(0, _LAYOUTS - 1))
    rest = number
    picked = []
    for pool in (_ORIGINS, _ORIGINS, _SIZES, _SIZES, _SCALES, _IMAGES, (False, True)):
        rest, i = divmod(rest, len(pool))
        picked.append(pool[i])
    left, top, width, height, scale, image, crop = picked
    screen = ScreenGeometry(left, top, width, height, scale)
    if not crop:
        return View.full(screen, *image)
    rng = random.Random(number)
    pw, ph = screen.pixel_width, screen.pixel_height
    x, y = rng.randrange(pw), rng.randrange(ph)
    return View(screen, Region(x, y, rng.randint(1, pw - x), rng.randint(1, ph - y)), *image)


_key_names = st.sampled_from(sorted(KEY_NAMES | set(ALIASES)))
_modifier_names = st.sampled_from(sorted(MODIFIERS | {a for a, c in ALIASES.items()
                                                      if c in MODIFIERS}))


@st.composite
def chords(draw: st.DrawFn) -> str:
    """Mostly plausible chords (aliases, odd case and separators), sometimes any text."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.text(min_size=1, max_size=48))
    parts = [draw(_modifier_names) for _ in range(shape // 3)] + [draw(_key_names)]
    sep = draw(st.sampled_from(["+", "+", " + ", "-", " "]))
    chord = sep.join(p.upper() if shape == 9 else p for p in parts)
    return chord[:48].strip() or "a"


_texts = st.one_of(st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=1,
                           max_size=30),
                   st.text(min_size=1, max_size=30),
                   st.sampled_from(["x" * 500, "a\tb\nc", "\u200b", "\x1b[2J", "é" * 500]))
_POINTER_TYPES = tuple(cls for cls in ACTION_TYPES if tag_of(cls) in _POINTER_COUNT)
valid_actions = action_dicts(
    kinds=(*ACTION_TYPES, *_POINTER_TYPES, *_POINTER_TYPES),  # pointers: most of the mapping
    special={"type.text": _texts, "key.keys": chords(), "hold.hold": chords(),
             "hold.keys": chords()},
).map(lambda data: _BY_TAG[data["action"]].model_validate(data))


def _check_resolved(resolved: Resolved, action: AnyAction, view: View) -> None:
    screen = view.screen
    assert resolved.action is action
    assert len(resolved.points) == _POINTER_COUNT.get(action.action, 0)
    for point in resolved.points:
        assert screen.contains(point), (point, screen)
        assert screen.corner_distance(point) >= CORNER_MARGIN, (point, screen)
    boxes = [getattr(action, name) for name in ("box", "to_box") if hasattr(action, name)]
    assert resolved.points == tuple(box_to_screen(box, view) for box in boxes)
    if isinstance(action, Drag):
        assert resolved.points[0] != resolved.points[1]
    if isinstance(action, Key | Hold):
        assert resolved.keys and set(resolved.keys) <= KEY_NAMES
    else:
        assert resolved.keys == ()
    if isinstance(action, Hold):
        assert resolved.hold and set(resolved.hold) <= KEY_NAMES
        assert not set(resolved.hold) & set(resolved.keys)
    else:
        assert resolved.hold == ()
    if isinstance(action, Type):
        assert all(ch in "\n\t" or unicodedata.category(ch)[0] != "C" for ch in action.text)


@FUZZ
@given(valid_actions, views())
def test_validator_resolves_fully_or_rejects(action: AnyAction, view: View) -> None:
    try:
        resolved = validate(action, view)
    except ActionError as exc:  # ActionRejected is one
        _check_message(exc)
        if action.action in _POINTER_COUNT:  # the only pointer check left: the corners
            assert isinstance(exc, ActionRejected)
        return
    _check_resolved(resolved, action, view)
    if action.action in _POINTER_COUNT:  # the monitor's own top-left corner is always refused
        corner = action.model_copy(update={"box": (0.0, 0.0, 0.0, 0.0)})
        with pytest.raises(ActionRejected, match="corner"):
            validate(corner, View.full(view.screen, view.image_width, view.image_height))
