"""The closed set of actions the agent may take, as the model speaks them.

Each action is a small frozen pydantic model; :data:`Action` is their union, told apart by the
``action`` field. Pointer targets are normalized ``[x1, y1, x2, y2]`` boxes in the image the model
saw (Phi-4-reasoning-vision's native grounding format); mapping them to the screen is the
grounding package's job. The same classes produce the JSON schema shown to the model, the GBNF
grammar that constrains its output, and the parser's checks, so the three cannot drift apart.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deskpilot.actions.text import shorten

# Limits shared by the grammar, the parser and the validator.
MAX_TARGET_CHARS = 80
MAX_TYPE_CHARS = 500
MAX_KEYS_CHARS = 48
MAX_MESSAGE_CHARS = 500
MAX_SCROLL = 25
MAX_WAIT_S = 30.0
MAX_PRESSES = 20

Norm = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Box = tuple[Norm, Norm, Norm, Norm]
Button = Literal["left", "right", "middle"]
Direction = Literal["up", "down", "left", "right"]


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


def _check_box(box: Box, name: str) -> None:
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise ValueError(f"{name} must be [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")


class _Pointer(_Action):
    target: Annotated[str, Field(max_length=MAX_TARGET_CHARS)] = ""
    box: Box

    @model_validator(mode="after")
    def _box_ordered(self) -> _Pointer:
        _check_box(self.box, "box")
        return self


class Click(_Pointer):
    """Click on the centre of ``box``."""

    action: Literal["click"]
    button: Button = "left"
    clicks: Annotated[int, Field(ge=1, le=3)] = 1


class Move(_Pointer):
    """Move the pointer to the centre of ``box`` (hover)."""

    action: Literal["move"]


class Drag(_Pointer):
    """Press on the centre of ``box`` and release on the centre of ``to_box``."""

    action: Literal["drag"]
    to_box: Box

    @model_validator(mode="after")
    def _to_box_ordered(self) -> Drag:
        _check_box(self.to_box, "to_box")
        return self


class Scroll(_Pointer):
    """Scroll ``amount`` notches in ``direction`` with the pointer over ``box``."""

    action: Literal["scroll"]
    direction: Direction
    amount: Annotated[int, Field(ge=1, le=MAX_SCROLL)] = 3


class Type(_Action):
    """Type text into the focused element."""

    action: Literal["type"]
    text: Annotated[str, Field(min_length=1, max_length=MAX_TYPE_CHARS)]


class Key(_Action):
    """Press a key or a chord such as ``ctrl+s``."""

    action: Literal["key"]
    keys: Annotated[str, Field(min_length=1, max_length=MAX_KEYS_CHARS)]


class Hold(_Action):
    """Hold the ``hold`` keys down while pressing ``keys`` ``presses`` times."""

    action: Literal["hold"]
    hold: Annotated[str, Field(min_length=1, max_length=MAX_KEYS_CHARS)]
    keys: Annotated[str, Field(min_length=1, max_length=MAX_KEYS_CHARS)]
    presses: Annotated[int, Field(ge=1, le=MAX_PRESSES)] = 1


class Wait(_Action):
    """Do nothing for a while (an animation, a load)."""

    action: Literal["wait"]
    seconds: Annotated[float, Field(ge=0.0, le=MAX_WAIT_S, allow_inf_nan=False)] = 1.0


class Done(_Action):
    """The task is complete; ``answer`` holds any value the task asked for."""

    action: Literal["done"]
    answer: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)] = ""


class Fail(_Action):
    """The task cannot be completed; ``reason`` says why."""

    action: Literal["fail"]
    reason: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]


class AskUser(_Action):
    """Stop and ask the person a question."""

    action: Literal["ask_user"]
    question: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]


ACTION_TYPES: tuple[type[_Action], ...] = (
    Click, Move, Drag, Scroll, Type, Key, Hold, Wait, Done, Fail, AskUser)

AnyAction = Click | Move | Drag | Scroll | Type | Key | Hold | Wait | Done | Fail | AskUser
"""Any one action (use in type hints)."""

Action = Annotated[AnyAction, Field(discriminator="action")]
"""The discriminated union (use with pydantic's TypeAdapter)."""



def tag_of(cls: type[_Action]) -> str:
    """The ``action`` tag an action class answers to (its ``Literal`` value)."""
    return str(typing.get_args(cls.model_fields["action"].annotation)[0])


# The planner names each pointer target in words; a grounding call turns each into its box.
BOX_TO_TARGET = {"box": "target", "to_box": "to_target"}

ACTION_NAMES: tuple[str, ...] = tuple(tag_of(t) for t in ACTION_TYPES)
TERMINAL_ACTIONS = frozenset({"done", "fail", "ask_user"})


def summarize(action: _Action) -> str:
    """A short human-readable line for logs and step lists."""
    data = action.model_dump()
    name = data.pop("action")
    target = data.pop("target", "")
    parts = []
    for key, value in data.items():
        if key in ("box", "to_box"):
            parts.append(f"{key}=[" + ", ".join(f"{v:.3f}" for v in value) + "]")
        elif isinstance(value, str):
            parts.append(f"{key}={shorten(value, 60)!r}")
        else:
            parts.append(f"{key}={value}")
    label = f' "{shorten(target, 60)}"' if target else ""
    return f"{name}{label} {' '.join(parts)}".strip()
