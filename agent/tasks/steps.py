"""Carry out one task-file step: dispatch on its kind, and turn what happened into a record."""

from __future__ import annotations

from collections.abc import Callable

from deskpilot.agent.tasks import act as steps_act
from deskpilot.agent.tasks import ask as steps_model
from deskpilot.agent.tasks import check as steps_check
from deskpilot.agent.tasks.file import Step, redact
from deskpilot.agent.tasks.kit import Draft, ModelAccess, StepContext, StepFailed
from deskpilot.agent.tasks.results import ScriptStep

__all__ = ["ModelAccess", "StepContext", "StepFailed", "run_step"]


def run_step(step: Step, index: int, ctx: StepContext) -> ScriptStep:
    """Run one step; failures come back as a failed record, never as an exception."""
    draft, start = Draft(), ctx.clock.now()
    passed = True
    try:
        _HANDLERS[step.kind](step, ctx, draft)
    except StepFailed as exc:
        passed, draft.message = False, str(exc)
    secrets = ctx.task.secrets
    return ScriptStep(
        index=index, kind=step.kind, label=step.label, file_line=step.line, passed=passed,
        message=redact(draft.message, secrets), source=draft.source, box=draft.box,
        point=draft.point, screenshot=draft.screenshot, diff=draft.diff,
        seconds=ctx.clock.now() - start, timings=dict(draft.timings),
        model_text=redact(draft.model_text, secrets),
        candidates=tuple(redact(c, secrets) for c in draft.candidates),
        agent_steps=draft.agent_steps)


_HANDLERS: dict[str, Callable[[Step, StepContext, Draft], None]] = {
    "click": steps_act.click, "type": steps_act.type_text, "key": steps_act.key,
    "scroll": steps_act.scroll, "wait": steps_act.wait,
    "wait_for": steps_check.wait_for, "expect": steps_check.expect,
    "expect_not": steps_check.expect_not, "screenshot": steps_check.screenshot,
    "expect_file": steps_check.expect_file,
    "do": steps_model.do, "check": steps_model.check, "query": steps_model.query,
}
