"""The errors :class:`deskpilot.Desktop` raises: one base, and one class per kind of failure.

A failed step raises a :class:`StepError` subclass carrying the step's record (what it did,
where it looked, why it failed) and the absolute path of its screenshot, if it kept one.
"""

from __future__ import annotations

from pathlib import Path

from deskpilot.agent.tasks.kit import ActionRefused, StatementFalse, StepFailed, TargetMissing
from deskpilot.agent.tasks.results import ScriptStep


class DesktopError(Exception):
    """Something deskpilot could not do on the desktop."""


class SetupFailed(DesktopError):
    """No display, a program that could not start, or a window that never came."""


class StepError(DesktopError):
    """A step did not hold. ``step`` is its record; ``screenshot`` the image it kept, if any."""

    def __init__(self, step: ScriptStep, run_dir: Path) -> None:
        self.step = step
        self.run_dir = run_dir
        self.screenshot = run_dir / step.screenshot if step.screenshot else None
        where = f" (line {step.file_line})" if step.file_line else ""
        shot = f"; screenshot {self.screenshot}" if self.screenshot else ""
        super().__init__(f"{step.label}{where}: {step.message}{shot}")


class TargetNotFound(StepError):
    """The text or target to act on was not found on the screen (or was ambiguous)."""


class ActionDenied(StepError):
    """The validator or the safety gate refused the action; no input was sent."""


class ExpectationFailed(StepError):
    """An ``expect``, ``expect_not``, ``wait_for``, ``expect_file`` or screenshot comparison
    did not hold."""


class ModelStepFailed(StepError):
    """A step for the model (``do``, ``check``, ``query``) did not succeed."""


_BY_FAILURE: tuple[tuple[type[StepFailed], type[StepError]], ...] = (
    (TargetMissing, TargetNotFound), (ActionRefused, ActionDenied),
    (StatementFalse, ModelStepFailed))
_BY_KIND = {"expect": ExpectationFailed, "expect_not": ExpectationFailed,
            "wait_for": ExpectationFailed, "expect_file": ExpectationFailed,
            "screenshot": ExpectationFailed, "do": ModelStepFailed, "check": ModelStepFailed,
            "query": ModelStepFailed}


def step_error(step: ScriptStep, failure: StepFailed, run_dir: Path) -> StepError:
    """The typed error for a failed step: by what failed first, then by the step's kind."""
    for failed, error in _BY_FAILURE:
        if isinstance(failure, failed):
            return error(step, run_dir)
    return _BY_KIND.get(step.kind, StepError)(step, run_dir)
