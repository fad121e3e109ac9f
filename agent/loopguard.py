"""Notice when the agent goes round in circles: one action repeated, or two taken in turn, while
the screen stays where it was.

Pure: it sees a canonical key per action and the screenshot of each step, and says why it thinks
the run is stuck (or nothing). The loop decides what to do about it.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from deskpilot.actions.text import shorten
from deskpilot.actions.types import AnyAction
from deskpilot.grounding.stable import changed, thumbnail

BOX_DECIMALS = 2
"""Boxes are rounded to this many decimals in an action key."""

BOX_TOLERANCE = 10 ** -BOX_DECIMALS
"""Rounded box coordinates this close count as the same target (jitter across a rounding
boundary: 0.404 and 0.406 round to 0.40 and 0.41)."""

_BOX_FIELDS = ("box", "to_box")
_DROPPED_FIELDS = ("target",)  # the model's free-text name for the element: not the action


def action_key(action: AnyAction) -> str:
    """A canonical string for an action: its JSON without ``target``, boxes rounded.

    Two actions with the same key do the same thing; the model's wording of the target and
    jitter below the rounding do not count.
    """
    data: dict[str, Any] = action.model_dump()
    for name in _DROPPED_FIELDS:
        data.pop(name, None)
    for name in _BOX_FIELDS:
        if name in data:
            data[name] = [round(float(v), BOX_DECIMALS) + 0.0 for v in data[name]]  # -0.0 -> 0.0
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class _Seen:
    key: str
    data: Any  # the key decoded (None when it is not JSON)
    thumb: np.ndarray
    label: str


class LoopGuard:
    """Watches the executed steps of one run for a loop.

    Call :meth:`observe` once per executed step; it returns a reason when

    * the same action was taken ``repeats`` times in a row with no change on the screen
      between them, or
    * the last ``cycle_len * cycles`` actions repeat a cycle of ``cycle_len`` actions that are
      not all the same (A-B-A-B) while the screen keeps coming back to the same state (the
      frames at the cycle's first action all match).

    Actions are compared by key (see :func:`action_key`), with box coordinates allowed to differ
    by :data:`BOX_TOLERANCE`; screens by :func:`grounding.stable.thumbnail` and
    :func:`grounding.stable.changed`.
    """

    def __init__(self, *, repeats: int = 3, cycle_len: int = 2, cycles: int = 2) -> None:
        if repeats < 2:
            raise ValueError(f"repeats must be at least 2, got {repeats}")
        if cycle_len < 2:
            raise ValueError(f"cycle_len must be at least 2, got {cycle_len}")
        if cycles < 2:
            raise ValueError(f"cycles must be at least 2, got {cycles}")
        self.repeats = repeats
        self.cycle_len = cycle_len
        self.cycles = cycles
        self._history: deque[_Seen] = deque(maxlen=max(repeats, cycle_len * cycles))

    def reset(self) -> None:
        """Forget every step seen so far (after the person took over, say)."""
        self._history.clear()

    def observe(self, action_key: str, screen: np.ndarray, *,
                label: str | None = None) -> str | None:
        """Record one executed step; return why the run looks stuck, or None.

        ``action_key`` is the step's :func:`action_key`; ``screen`` its screenshot (RGB): the
        frame the action was decided on, as the loop holds it (a frame grabbed after acting
        works as well; only successive steps' frames are compared). ``label`` names the action
        in the reason (e.g. ``"click 'OK' at (400, 300)"``); by default it is described from
        the key.
        """
        try:
            data = json.loads(action_key)
        except ValueError:
            data = None
        self._history.append(_Seen(action_key, data, thumbnail(screen),
                                   label if label is not None else describe_key(action_key)))
        return self._repeated() or self._cycled()

    def _repeated(self) -> str | None:
        if len(self._history) < self.repeats:
            return None
        last = list(self._history)[-self.repeats:]
        first = last[0]
        if not all(_same(first.data, first.key, s.data, s.key) for s in last[1:]):
            return None
        if any(changed(first.thumb, s.thumb) for s in last[1:]):
            return None
        return (f"the same action {self.repeats} times with no change on the screen: "
                f"{last[-1].label}")

    def _cycled(self) -> str | None:
        size = self.cycle_len * self.cycles
        if len(self._history) < size:
            return None
        window = list(self._history)[-size:]
        period = window[:self.cycle_len]
        if all(_same(period[0].data, period[0].key, s.data, s.key) for s in period[1:]):
            return None  # one action over and over: the repeat rule's business
        for i in range(self.cycle_len, size):
            a, b = window[i - self.cycle_len], window[i]
            if not _same(a.data, a.key, b.data, b.key):
                return None
        starts = window[::self.cycle_len]
        if any(changed(starts[0].thumb, s.thumb) for s in starts[1:]):
            return None
        names = ", then ".join(s.label for s in period)
        return (f"the same {self.cycle_len} actions in turn {self.cycles} times, the screen "
                f"coming back to where it was: {names}")


def _same(a: Any, a_key: str, b: Any, b_key: str) -> bool:
    """Keys for the same action: equal, or equal but for boxes within the tolerance."""
    if a_key == b_key:
        return True
    if not isinstance(a, dict) or not isinstance(b, dict) or a.keys() != b.keys():
        return False
    for name, value in a.items():
        other = b[name]
        if name in _BOX_FIELDS and isinstance(value, list) and isinstance(other, list):
            if len(value) != len(other) or any(
                    not _close(x, y) for x, y in zip(value, other, strict=True)):
                return False
        elif value != other:
            return False
    return True


def _close(x: Any, y: Any) -> bool:
    if isinstance(x, int | float) and isinstance(y, int | float):
        return abs(x - y) <= BOX_TOLERANCE + 1e-9
    return bool(x == y)


def describe_key(key: str) -> str:
    """A short readable form of an action key: ``click box=[0.40, 0.40, 0.60, 0.60] ...``."""
    try:
        data = json.loads(key)
    except ValueError:
        data = None
    if not isinstance(data, dict) or "action" not in data:
        return shorten(key, 120)
    parts = [str(data.pop("action"))]
    for name, value in data.items():
        if name in _BOX_FIELDS and isinstance(value, list):
            parts.append(f"{name}=[" + ", ".join(_num(v) for v in value) + "]")
        elif isinstance(value, str):
            parts.append(f"{name}={value if len(value) <= 40 else value[:39] + '…'!r}")
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def _num(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else repr(value)


__all__ = ["BOX_DECIMALS", "BOX_TOLERANCE", "LoopGuard", "action_key", "describe_key"]
