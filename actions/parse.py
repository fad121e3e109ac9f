"""Turn the model's reply into exactly one typed action, or one error the model can act on."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from deskpilot.actions.text import shorten
from deskpilot.actions.types import ACTION_NAMES, Action, AnyAction

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
    return action_from_data(data)


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
