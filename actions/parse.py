"""Turn the model's reply into exactly one typed action, or one error the model can act on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from deskpilot.actions.text import shorten
from deskpilot.actions.types import (
    ACTION_NAMES,
    ACTION_TYPES,
    BOX_TO_TARGET,
    MAX_TARGET_CHARS,
    Action,
    AnyAction,
    tag_of,
)

_ADAPTER: TypeAdapter[AnyAction] = TypeAdapter(Action)
_MAX_REPLY_CHARS = 20_000


class ActionError(ValueError):
    """The model's reply is not a usable action; the message tells the model how to fix it."""


def _reject_constant(name: str) -> Any:
    raise ActionError(f"{name} is not a number; use plain decimals such as 0.25")


def parse_action(answer: str) -> AnyAction:
    """Parse one JSON action from the answer part of a reply (after any reasoning).

    Exactly one JSON object is accepted, with nothing but white space around it: a second
    object or trailing prose is an error rather than something to guess about.
    """
    return action_from_data(_load_json(answer))


def _load_json(answer: str) -> object:
    """The one JSON value of an answer, or an :class:`ActionError` that says what is wrong."""
    text = answer.strip()
    if not text:
        raise ActionError("the reply held no action; answer with one JSON object such as "
                          '{"action": "click", "target": "OK button", "box": [x1, y1, x2, y2]}')
    if len(text) > _MAX_REPLY_CHARS:
        raise ActionError(f"the reply is {len(text)} characters long; answer with one short "
                          "JSON action")
    if not text.startswith("{"):
        raise ActionError("the reply must start with '{': answer with one JSON object and "
                          "nothing else")
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    try:
        data, end = decoder.raw_decode(text)
    except ActionError:  # a NaN or Infinity constant (ActionError is a ValueError too)
        raise
    except json.JSONDecodeError as exc:
        raise ActionError(f"the reply is not valid JSON ({exc.msg} at character {exc.pos}); "
                          "answer with one complete JSON object") from None
    except (ValueError, RecursionError):  # found by fuzzing: 5000-digit ints, deep nesting
        raise ActionError("the reply is not a plain JSON action (a number with too many digits "
                          "or nesting too deep); answer with one flat JSON object") from None
    rest = text[end:].strip()
    if rest:
        what = "a second action" if rest.startswith("{") else "extra text"
        raise ActionError(f"found {what} after the JSON action; answer with exactly one "
                          "action and nothing after it")
    return data


@dataclass(frozen=True, slots=True)
class Plan:
    """A planner's action before grounding: pointer targets named in words, no boxes yet.

    ``targets`` are the descriptions to locate, in the order of the boxes they become
    (``target`` then ``to_target``); :meth:`with_boxes` builds the action once they are found.
    """

    name: str
    fields: dict[str, Any]
    targets: tuple[str, ...] = ()
    action: AnyAction | None = None  # set when the action needs no grounding

    def with_boxes(self, boxes: tuple[tuple[float, float, float, float], ...]) -> AnyAction:
        """The action with each target's box filled in (ActionError if it does not fit)."""
        if self.action is not None:
            return self.action
        if len(boxes) != len(self.targets):
            raise ActionError(f"{self.name} needs {len(self.targets)} boxes, got {len(boxes)}")
        data = dict(self.fields)
        for (box_name, words_name), box in zip(_POINTER_FIELDS, boxes, strict=False):
            data[box_name] = box
            if words_name != "target":
                data.pop(words_name, None)  # the action types keep only the first description
        return action_from_data(data)


_POINTER_FIELDS = tuple(BOX_TO_TARGET.items())
_PLACEHOLDER_BOX = (0.0, 0.0, 1.0, 1.0)


def parse_plan(answer: str) -> Plan:
    """Parse a planner's answer: a JSON action whose pointer targets are descriptions.

    Boxes are refused (the grounding call gives them); every other field is checked now, with
    a placeholder box, so a malformed plan costs no grounding call.
    """
    data = _load_json(answer)
    if not isinstance(data, dict):
        raise ActionError("the action must be a JSON object with an \"action\" field")
    present = [name for name, _ in _POINTER_FIELDS if name in data]
    if present:
        raise ActionError(f"give no {' or '.join(present)}: name the target in words "
                          '("target": "the Save button") and it is located for you')
    name = data.get("action")
    needed = [words for _, words in _POINTER_FIELDS[:_pointer_count(name)]]
    if not needed:
        return Plan(str(name), data, action=action_from_data(data))
    targets = []
    for words in needed:
        value = data.get(words)
        if not isinstance(value, str) or not value.strip():
            raise ActionError(f"a {name} action needs {words!r}: the element, in words")
        if len(value) > MAX_TARGET_CHARS:
            raise ActionError(f"{words} is longer than {MAX_TARGET_CHARS} characters")
        targets.append(value.strip())
    plan = Plan(str(name), data, tuple(targets))
    plan.with_boxes(tuple(_PLACEHOLDER_BOX for _ in targets))  # every other field, checked
    return plan


def _pointer_count(name: object) -> int:
    """How many boxes an action of this name takes (0 for keyboard and terminal actions)."""
    for cls in ACTION_TYPES:
        if tag_of(cls) == name:
            return sum(box in cls.model_fields for box, _ in _POINTER_FIELDS)
    return 0


def action_from_data(data: object) -> AnyAction:
    """Validate an already decoded JSON value as an action."""
    if not isinstance(data, dict):
        raise ActionError("the action must be a JSON object with an \"action\" field")
    name = data.get("action")
    if name not in ACTION_NAMES:
        raise ActionError(f"unknown action {_bounded(name)}; choose one of: "
                          f"{', '.join(ACTION_NAMES)}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ActionError(f"invalid {name} action: {_explain(exc)}") from None


def _explain(exc: ValidationError) -> str:
    """Condense pydantic's report into one line per problem, without echoing huge inputs."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(_loc_part(p) for p in err["loc"][1:]) or "action"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc != "action" else msg)
    return "; ".join(parts[:4])


def _bounded(value: object, limit: int = 40) -> str:
    """A short repr: the model's own junk is never echoed back at length."""
    return shorten(repr(value), limit)


def _loc_part(part: object) -> str:
    """One step of an error location; odd field names (newlines, 2000 chars) are quoted short."""
    if isinstance(part, int) or (isinstance(part, str) and part.isidentifier()
                                 and len(part) <= 40):
        return str(part)
    return _bounded(part)
