"""What a run is given: its budget, and how the model is asked.

Kept apart from the loop so that the command line can read the defaults without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass

from deskpilot.grounding.preprocess import DEFAULT_MAX_PATCHES
from deskpilot.models.grounder import GroundingPrompt
from deskpilot.models.runtime import Mode


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits that end a run."""

    max_steps: int = 30
    max_seconds: float = 600.0
    max_consecutive_errors: int = 3
    max_repeats: int = 3  # the same action this often on an unchanged screen ends the run


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """How the model is asked."""

    mode: Mode = Mode.DIRECT
    max_patches: int = DEFAULT_MAX_PATCHES
    allowed: frozenset[str] | None = None  # restrict the action kinds (None: all)
    temperature: float = 0.0
    max_reasoning_tokens: int = 1024
    zoom: bool = False  # locate small pointer targets again on a full-resolution crop
    zoom_patches: int = 1024  # the crop's patch budget (1024: a 512x512 crop)
    # native: the step call plans (targets in words) and the model's own grounding call finds
    # each box; joint: one call answers the action with its box (the earlier path).
    grounding: GroundingPrompt = GroundingPrompt.NATIVE
