"""The one step registry: each step kind's spec, handler and need of the model, and
:func:`run_step`, which carries out one step and turns what happened into a record."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from deskpilot.actions.keys import ChordError, UnknownKeyError, parse_chord
from deskpilot.agent.records import StepRecord
from deskpilot.agent.tasks import act, ask, check
from deskpilot.agent.tasks.kit import Draft, StepContext, StepFailed, grab, keep
from deskpilot.agent.tasks.results import ScriptStep
from deskpilot.agent.tasks.spec import (
    ClickSpec,
    FileSpec,
    Instruction,
    KeyChord,
    QuerySpec,
    ScreenshotSpec,
    ScrollSpec,
    Step,
    TextSpec,
    TypeSpec,
    WaitSeconds,
)

S = TypeVar("S")
log = logging.getLogger(__name__)


def _never(spec: object) -> bool:
    return False


def _always(spec: object) -> bool:
    return True


def _known_chord(chord: str) -> None:
    try:
        parse_chord(chord)
    except (UnknownKeyError, ChordError) as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class StepKind(Generic[S]):
    """One kind of step.

    ``spec`` is what pydantic validates the YAML value into (a model, or an annotated scalar);
    ``handler`` carries the step out from that value; ``needs_model`` says whether a given spec
    needs the vision model; ``check`` refuses values pydantic cannot judge (ValueError);
    ``shorthand`` is the field a bare string fills (``click: Save`` is ``click: {text: Save}``).
    """

    spec: Any
    handler: Callable[[S, Step, StepContext, Draft], None]
    needs_model: Callable[[S], bool] = _never
    check: Callable[[S], None] | None = None
    shorthand: str | None = None

    def run(self, step: Step, ctx: StepContext, draft: Draft) -> None:
        """Carry out ``step``, whose spec was validated against this kind when it loaded."""
        self.handler(step.spec, step, ctx, draft)


def _click_needs_model(spec: ClickSpec) -> bool:
    return spec.target is not None


STEPS: dict[str, StepKind[Any]] = {
    "click": StepKind(ClickSpec, act.click, needs_model=_click_needs_model, shorthand="text"),
    "type": StepKind(TypeSpec, act.type_text, shorthand="text"),
    "key": StepKind(KeyChord, act.key, check=_known_chord),
    "scroll": StepKind(ScrollSpec, act.scroll),
    "wait": StepKind(WaitSeconds, act.wait),
    "wait_for": StepKind(TextSpec, check.wait_for, shorthand="text"),
    "expect": StepKind(TextSpec, check.expect, shorthand="text"),
    "expect_not": StepKind(TextSpec, check.expect_not, shorthand="text"),
    "screenshot": StepKind(ScreenshotSpec, check.screenshot),
    "expect_file": StepKind(FileSpec, check.expect_file),
    "do": StepKind(Instruction, ask.do, needs_model=_always),
    "check": StepKind(Instruction, ask.check, needs_model=_always),
    "query": StepKind(QuerySpec, ask.query, needs_model=_always),
}
"""Every step kind a task file may use, in the order the docs list them."""


def run_step(step: Step, index: int, ctx: StepContext) -> tuple[ScriptStep, StepFailed | None]:
    """Run one step. Failures come back as a failed record, never raised, with the
    :class:`StepFailed` beside it (its class says which kind of failure it was).

    Every failed step has a screenshot: the one it took, or else the screen as it failed.
    """
    draft, start = Draft(), ctx.clock.now()
    # The label as it ran: variables filled in (a query may have set them just before),
    # secrets hidden.
    label = ctx.shown(step.label)
    failure: StepFailed | None = None
    try:
        STEPS[step.kind].run(step, ctx, draft)
    except StepFailed as exc:
        failure, draft.message = exc, str(exc)
        if draft.screenshot is None:
            _keep_evidence(step, ctx, draft)
    hide = ctx.record.redaction
    return ScriptStep(
        index=index, kind=step.kind, label=hide.text(label), file_line=step.line,
        passed=failure is None, message=hide.text(draft.message), source=draft.source,
        box=draft.box, point=draft.point, screenshot=draft.screenshot, diff=draft.diff,
        baseline=draft.baseline, seconds=ctx.clock.now() - start, timings=dict(draft.timings),
        model_text=hide.text(draft.model_text),
        candidates=tuple(replace(c, text=hide.text(c.text)) for c in draft.candidates),
        agent_steps=tuple(StepRecord.from_json(hide.data(s.to_json())) if hide else s
                          for s in draft.agent_steps)), failure


def _keep_evidence(step: Step, ctx: StepContext, draft: Draft) -> None:
    """The screen as a step failed, for the report and the JUnit case; a screen that cannot be
    read any more (the display went away) leaves the step without one, and the log says so."""
    try:
        keep(ctx, draft, grab(ctx, draft), f"step-{step.position + 1:03d}")
    except Exception as exc:  # the step already failed; its own reason is the one to report
        log.warning("no screenshot of failed step %d: %s", step.position + 1, exc)
