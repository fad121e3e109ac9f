"""Test doubles shared by several test modules."""

from __future__ import annotations

from deskpilot.agent.settings import ModelSettings
from deskpilot.models.grounder import GroundingPrompt


class FakeClock:
    """Time passes only when something sleeps: waits are exact and instant."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


# The single-call path (`--grounding joint`): for tests that script one JSON answer with its
# box per step, as the agent asked before the planner and grounder were split.
JOINT_SETTINGS = ModelSettings(grounding=GroundingPrompt.JOINT)
