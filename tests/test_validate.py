"""Validator units: targets mapped through the view, corners and bad keys refused."""

from __future__ import annotations

import pytest

from deskpilot.actions.parse import parse_action
from deskpilot.actions.validate import ActionRejected, validate
from deskpilot.grounding.geometry import Point, Region, ScreenGeometry, View

SCREEN = ScreenGeometry(0, 0, 1920, 1080)
FULL = View.full(SCREEN, 1280, 720)


def _v(reply: str, view: View = FULL):
    return validate(parse_action(reply), view)


def test_click_maps_box_centre_to_screen() -> None:
    r = _v('{"action": "click", "box": [0.5, 0.5, 0.5, 0.5]}')
    assert r.points == (Point(960, 540),)


def test_click_on_hidpi_negative_origin_crop() -> None:
    screen = ScreenGeometry(-1440, 0, 1440, 900, scale=2.0, index=2)
    view = View(screen, Region(1000, 600, 800, 400), 800, 400)
    r = _v('{"action": "click", "box": [0.25, 0.5, 0.25, 0.5]}', view)
    # pixel (1000 + 200, 600 + 200) -> points (600, 400) -> offset by the monitor's origin
    assert r.points == (Point(-1440 + 600, 400),)


@pytest.mark.parametrize("box", [[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1],
                                 [0, 0, 0.002, 0.002]])
def test_corners_are_refused(box: list[float]) -> None:
    with pytest.raises(ActionRejected, match="corner"):
        _v(f'{{"action": "click", "box": {box}}}')


def test_zero_length_drag_is_refused() -> None:
    with pytest.raises(ActionRejected, match="same point"):
        _v('{"action": "drag", "box": [0.4,0.4,0.4,0.4], "to_box": [0.4,0.4,0.4,0.4]}')


def test_drag_has_two_points() -> None:
    r = _v('{"action": "drag", "box": [0.1,0.1,0.1,0.1], "to_box": [0.9,0.9,0.9,0.9]}')
    assert r.points == (Point(192, 108), Point(1728, 972))


@pytest.mark.parametrize(("keys", "canonical"), [("ctrl+s", ("ctrl", "s")),
                                                  ("Control+Shift+T", ("ctrl", "shift", "t")),
                                                  ("Return", ("enter",))])
def test_keys_are_canonicalized(keys: str, canonical: tuple[str, ...]) -> None:
    assert _v(f'{{"action": "key", "keys": "{keys}"}}').keys == canonical


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ActionRejected, match="unknown key"):
        _v('{"action": "key", "keys": "ctrl+flux"}')


def test_hold_overlap_is_refused() -> None:
    with pytest.raises(ActionRejected, match="share a key"):
        _v('{"action": "hold", "hold": "shift", "keys": "shift", "presses": 2}')


@pytest.mark.parametrize("text", ["a\x00b", "\x1b[31m", "bell\x07", "rtl\u202eoverride"])
def test_control_characters_in_text_are_refused(text: str) -> None:
    import json
    with pytest.raises(ActionRejected, match="control"):
        _v(json.dumps({"action": "type", "text": text}))


def test_newlines_and_tabs_may_be_typed() -> None:
    assert _v('{"action": "type", "text": "a\\tb\\nc"}').action.text == "a\tb\nc"
