"""deskpilot: a local desktop agent that looks at the screen, asks a vision-language model running
on this machine what to do, and acts with the mouse and keyboard, under supervision.

This module is the package's public face: it only re-exports. The names load on first use, so
``import deskpilot`` stays cheap for the command line and its child processes::

    from deskpilot import Budget, ModelSettings, RunDir, run_agent
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name and the module that defines it; the block below says the same to type
# checkers, and a test keeps the two in step.
_EXPORTS = {
    "Desktop": "deskpilot.agent.api.desktop",
    "write_report": "deskpilot.agent.api.desktop",
    "DesktopError": "deskpilot.agent.api.errors",
    "SetupFailed": "deskpilot.agent.api.errors",
    "StepError": "deskpilot.agent.api.errors",
    "TargetNotFound": "deskpilot.agent.api.errors",
    "ActionDenied": "deskpilot.agent.api.errors",
    "ExpectationFailed": "deskpilot.agent.api.errors",
    "ModelStepFailed": "deskpilot.agent.api.errors",
    "run_agent": "deskpilot.agent.loop",
    "Budget": "deskpilot.agent.settings",
    "ModelSettings": "deskpilot.agent.settings",
    "RunResult": "deskpilot.agent.records",
    "Status": "deskpilot.agent.records",
    "StepRecord": "deskpilot.agent.records",
    "RunDir": "deskpilot.agent.rundir",
    "Mode": "deskpilot.models.runtime",
    "Runtime": "deskpilot.models.runtime",
}

if TYPE_CHECKING:
    from deskpilot.agent.api.desktop import Desktop as Desktop
    from deskpilot.agent.api.desktop import write_report as write_report
    from deskpilot.agent.api.errors import ActionDenied as ActionDenied
    from deskpilot.agent.api.errors import DesktopError as DesktopError
    from deskpilot.agent.api.errors import ExpectationFailed as ExpectationFailed
    from deskpilot.agent.api.errors import ModelStepFailed as ModelStepFailed
    from deskpilot.agent.api.errors import SetupFailed as SetupFailed
    from deskpilot.agent.api.errors import StepError as StepError
    from deskpilot.agent.api.errors import TargetNotFound as TargetNotFound
    from deskpilot.agent.loop import run_agent as run_agent
    from deskpilot.agent.records import RunResult as RunResult
    from deskpilot.agent.records import Status as Status
    from deskpilot.agent.records import StepRecord as StepRecord
    from deskpilot.agent.rundir import RunDir as RunDir
    from deskpilot.agent.settings import Budget as Budget
    from deskpilot.agent.settings import ModelSettings as ModelSettings
    from deskpilot.models.runtime import Mode as Mode
    from deskpilot.models.runtime import Runtime as Runtime

__all__ = ["__version__", *_EXPORTS]  # noqa: PLE0604 (the names above, kept in one place)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deskpilot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
