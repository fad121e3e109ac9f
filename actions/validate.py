"""Check an action against the screen before anything touches the input devices."""

from __future__ import annotations

import unicodedata

from deskpilot.actions.keys import parse_chord
from deskpilot.actions.parse import ActionError
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import AnyAction, Click, Drag, Hold, Key, Move, Scroll, Type
from deskpilot.grounding.geometry import Point, View, box_to_screen

# pyautogui's fail-safe fires when the pointer sits on a screen corner; a model answering
# [0, 0, 0, 0] would trip it. Keep the agent this many points away from every corner.
CORNER_MARGIN = 3
_ALLOWED_CONTROLS = {"\n", "\t"}


class ActionRejected(ActionError):
    """The action parsed but cannot be carried out safely on this screen."""


def validate(action: AnyAction, view: View) -> Resolved:
    """Map the action's targets through ``view`` and check every part of it.

    Returns the only kind of value the executor accepts; raises :class:`ActionRejected` with a
    message the model can act on.
    """
    points = tuple(_check_point(box_to_screen(box, view), view, label)
                   for label, box in _boxes(action))
    if isinstance(action, Drag) and points[0] == points[1]:
        raise ActionRejected("drag starts and ends on the same point; use click, or give a "
                             "to_box away from box")
    keys: tuple[str, ...] = ()
    hold: tuple[str, ...] = ()
    if isinstance(action, Type):
        _check_text(action.text)
    elif isinstance(action, Key):
        keys = _chord(action.keys, "keys")
    elif isinstance(action, Hold):
        hold = _chord(action.hold, "hold")
        keys = _chord(action.keys, "keys")
        if set(hold) & set(keys):
            raise ActionRejected("hold and keys share a key; hold the modifiers and press "
                                 "another key")
    return Resolved(action=action, points=points, keys=keys, hold=hold)


def _boxes(action: AnyAction) -> list[tuple[str, tuple[float, float, float, float]]]:
    boxes = []
    if isinstance(action, Click | Move | Drag | Scroll):
        boxes.append(("box", action.box))
    if isinstance(action, Drag):
        boxes.append(("to_box", action.to_box))
    return boxes


def _check_point(point: Point, view: View, label: str) -> Point:
    screen = view.screen
    if not screen.contains(point):
        raise ActionRejected(f"{label} maps to ({point.x}, {point.y}), outside the screen "
                             f"({screen.width}x{screen.height} at {screen.left},{screen.top})")
    near_origin = max(abs(point.x), abs(point.y)) < CORNER_MARGIN
    if screen.corner_distance(point) < CORNER_MARGIN or near_origin:
        raise ActionRejected(f"{label} points at a screen corner ({point.x}, {point.y}), which "
                             "is reserved as the person's emergency stop; give the box of the "
                             "element you mean")
    return point


def _check_text(text: str) -> None:
    for i, ch in enumerate(text):
        if ch in _ALLOWED_CONTROLS:
            continue
        if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"}:
            raise ActionRejected(f"text holds a control or unassigned character "
                                 f"(U+{ord(ch):04X} at {i}); type visible text, use the key "
                                 "action for special keys")


def _chord(text: str, label: str) -> tuple[str, ...]:
    try:
        return parse_chord(text)
    except ValueError as exc:
        raise ActionRejected(f"{label}: {exc}") from None


__all__ = ["CORNER_MARGIN", "ActionRejected", "validate"]
