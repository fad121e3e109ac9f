"""Messages the agent's worker thread posts to the interface (``post_message`` is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from textual.message import Message

from deskpilot.agent.records import RunResult, StepRecord


@dataclass
class Observed(Message):
    """A new screenshot, before the model has seen it."""

    index: int
    rgb: np.ndarray


@dataclass
class TextChunk(Message):
    """A piece of model output, as it is generated."""

    text: str


@dataclass
class Decided(Message):
    """The model's next action, before it is checked, approved or carried out."""

    index: int
    action: dict[str, Any]
    points: tuple[tuple[int, int], ...]


@dataclass
class StepDone(Message):
    """A step's record: the same one the trajectory file gets."""

    step: StepRecord


@dataclass
class StateChanged(Message):
    """The run's state word changed (running, paused, you have control, ...)."""

    state: str


@dataclass
class Loaded(Message):
    """The model is loaded; ``model`` is its name."""

    model: str


@dataclass
class RunEnded(Message):
    """The run is over; ``error`` when the job itself failed before a result."""

    result: RunResult | None
    error: str | None = None
