"""An action that passed validation, with its targets mapped to screen points."""

from __future__ import annotations

from dataclasses import dataclass

from deskpilot.actions.types import AnyAction
from deskpilot.grounding.geometry import Point


@dataclass(frozen=True, slots=True)
class Resolved:
    """A validated action ready for the input device.

    ``points`` holds the screen points of the action's targets in order: one for click, move and
    scroll (the box centre), two for drag (press, release), none for keyboard and control actions.
    ``keys`` and ``hold`` hold canonical key names for key and hold actions.
    Only :func:`actions.validate.validate` should build these.
    """

    action: AnyAction
    points: tuple[Point, ...] = ()
    keys: tuple[str, ...] = ()
    hold: tuple[str, ...] = ()
