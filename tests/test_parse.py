"""Parser units: exactly one action or one ActionError with a usable message."""

from __future__ import annotations

import json
import math

import pytest

from deskpilot.actions.parse import ActionError, parse_action
from deskpilot.actions.types import Click, Done, Drag, Hold, Key, Scroll, Type, Wait

BOX = [0.1, 0.2, 0.3, 0.4]


@pytest.mark.parametrize(("reply", "expected"), [
    ('{"action": "click", "target": "OK", "box": [0.1, 0.2, 0.3, 0.4]}',
     Click(action="click", target="OK", box=(0.1, 0.2, 0.3, 0.4))),
    ('  {"action":"click","box":[0,0,1,1],"button":"right","clicks":2}\n',
     Click(action="click", box=(0, 0, 1, 1), button="right", clicks=2)),
    ('{"action": "drag", "box": [0.1,0.1,0.2,0.2], "to_box": [0.5,0.5,0.6,0.6]}',
     Drag(action="drag", box=(0.1, 0.1, 0.2, 0.2), to_box=(0.5, 0.5, 0.6, 0.6))),
    ('{"action": "scroll", "box": [0,0,1,1], "direction": "down", "amount": 5}',
     Scroll(action="scroll", box=(0, 0, 1, 1), direction="down", amount=5)),
    ('{"action": "type", "text": "hello\\nworld"}', Type(action="type", text="hello\nworld")),
    ('{"action": "key", "keys": "ctrl+s"}', Key(action="key", keys="ctrl+s")),
    ('{"action": "hold", "hold": "shift", "keys": "down", "presses": 3}',
     Hold(action="hold", hold="shift", keys="down", presses=3)),
    ('{"action": "wait", "seconds": 1.5}', Wait(action="wait", seconds=1.5)),
    ('{"action": "done", "answer": "15"}', Done(action="done", answer="15")),
], ids=["click", "click-defaults", "drag", "scroll", "type", "key", "hold", "wait", "done"])
def test_parses_each_action(reply: str, expected: object) -> None:
    assert parse_action(reply) == expected


@pytest.mark.parametrize(("reply", "message"), [
    ("", "held no action"),
    ("   ", "held no action"),
    ("I will click the button", "must start with '{'"),
    ('{"action": "click", "box": [0.1, 0.2', "not valid JSON"),
    ('{"action": "wait"} and then more', "extra text"),
    ('{"action": "wait"}{"action": "wait"}', "second action"),
    ('{"action": "teleport"}', "unknown action 'teleport'"),
    ('{"box": [0,0,1,1]}', "unknown action None"),
    ('["click"]', "must start with '{'"),
    ('{"action": "click", "box": [0.3, 0.2, 0.1, 0.4]}', "x1 <= x2"),
    ('{"action": "click", "box": [0.1, 0.2, 0.3]}', "box"),
    ('{"action": "click", "box": [0.1, 0.2, 0.3, 1.5]}', "less than or equal to 1"),
    ('{"action": "click", "box": [-0.1, 0.2, 0.3, 0.5]}', "greater than or equal to 0"),
    ('{"action": "click", "box": [0.1, 0.2, 0.3, 0.4], "clicks": 9}', "clicks"),
    ('{"action": "click", "box": [0.1, 0.2, 0.3, 0.4], "button": "side"}', "button"),
    ('{"action": "click", "box": [0.1, 0.2, 0.3, 0.4], "x": 3}', "x: Extra inputs"),
    ('{"action": "wait", "seconds": NaN}', "NaN is not a number"),
    ('{"action": "wait", "seconds": Infinity}', "Infinity is not a number"),
    ('{"action": "scroll", "box": [0,0,1,1], "direction": "up", "amount": 1e9}', "amount"),
    ('{"action": "type", "text": ""}', "text"),
    ('{"action": "type", "text": "' + "x" * 501 + '"}', "at most 500"),
    ('{"action": "fail"}', "reason"),
    ('{"action": "key", "keys": 5}', "keys"),
])
def test_rejects_with_explanation(reply: str, message: str) -> None:
    with pytest.raises(ActionError) as info:
        parse_action(reply)
    assert message in str(info.value)


def test_huge_reply_is_refused_without_echo() -> None:
    reply = json.dumps({"action": "type", "text": "y" * 100_000})
    with pytest.raises(ActionError) as info:
        parse_action(reply)
    assert len(str(info.value)) < 200


def test_actions_are_immutable() -> None:
    action = parse_action('{"action": "done", "answer": "x"}')
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own frozen error type
        action.answer = "y"  # type: ignore[misc]


# ---------------------------------------------------------------- property-based

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=5),
    max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_raises_action_error(text: str) -> None:
    try:
        parse_action(text)
    except ActionError as exc:
        assert str(exc)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["click", "move", "drag", "scroll", "type", "key", "hold", "wait",
                        "done", "fail", "ask_user", "nope"]),
       st.dictionaries(st.sampled_from(["target", "box", "to_box", "button", "clicks",
                                        "direction", "amount", "text", "keys", "hold",
                                        "presses", "seconds", "answer", "reason", "question",
                                        "extra"]), _json_values, max_size=6))
def test_any_object_is_a_whole_action_or_an_explained_error(name: str, fields: dict) -> None:
    reply = json.dumps({"action": name, **fields}, allow_nan=True)
    try:
        action = parse_action(reply)
    except ActionError as exc:
        assert str(exc)
    else:  # a parsed action satisfies every declared bound
        assert action.action == name
        for value in action.model_dump().values():
            if isinstance(value, float):
                assert math.isfinite(value)
