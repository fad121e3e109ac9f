"""Steps that ask the vision model: ``do`` (the agent loop), ``check`` and ``query``."""

from __future__ import annotations

import time
from dataclasses import replace

from deskpilot.agent.loop import run_agent
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.settings import Budget
from deskpilot.agent.tasks.kit import (
    Draft,
    StatementFalse,
    StepContext,
    StepFailed,
    grab,
    keep,
    lap,
)
from deskpilot.agent.tasks.results import Source
from deskpilot.agent.tasks.spec import QuerySpec, Step
from deskpilot.grounding.preprocess import prepare
from deskpilot.models import asks


def do(instruction: str, step: Step, ctx: StepContext, draft: Draft) -> None:
    sub = RunDir(ctx.record.path / "agent", name=f"step-{step.position + 1:03d}",
                 redaction=ctx.record.redaction)
    remaining = max(1.0, ctx.deadline - ctx.clock.now())
    result = run_agent(ctx.shown(instruction), runtime=ctx.model.runtime(), screen=ctx.screen,
                       device=ctx.device, record=sub, clock=ctx.clock,
                       budget=Budget(max_steps=ctx.task.budget.max_steps,
                                     max_seconds=min(remaining, ctx.task.budget.timeout_s)),
                       settings=ctx.model.settings, gate=ctx.gate)
    prefix = f"agent/step-{step.position + 1:03d}/"
    draft.agent_steps = tuple(
        replace(s, screenshot=prefix + s.screenshot if s.screenshot else None)
        for s in result.steps)
    draft.source = Source.MODEL
    draft.model_text = "\n".join(
        (f"[{s.index}] " + (f"<think>{s.reasoning}</think> " if s.reasoning else "") + s.answer)
        for s in result.steps)
    draft.message = f"{result.status.value} after {len(result.steps)} agent steps: " \
                    f"{result.message}"
    if not result.status.ok:
        raise StepFailed(draft.message)


def check(statement: str, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft)
    keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    settings = ctx.model.settings
    t = time.perf_counter()
    reply = ctx.model.ask(asks.check_request(
        ctx.shown(statement), prepare(frame, max_patches=settings.max_patches),
        max_reasoning_tokens=settings.max_reasoning_tokens, temperature=settings.temperature))
    lap(draft, "model", t)
    draft.source = Source.MODEL
    draft.model_text = (f"<think>{reply.reasoning}</think>\n" if reply.reasoning else "") + \
        reply.answer
    try:
        judgement = asks.parse_check(reply)
    except asks.AskError as exc:
        raise StepFailed(str(exc)) from None
    if not judgement.holds:
        raise StatementFalse("the model judged that the statement does not hold")
    draft.message = "the model judged that the statement holds"


def query(spec: QuerySpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft)
    keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    settings = ctx.model.settings
    t = time.perf_counter()
    reply = ctx.model.ask(asks.query_request(ctx.shown(spec.ask),
                                             prepare(frame, max_patches=settings.max_patches),
                                             temperature=settings.temperature))
    lap(draft, "model", t)
    draft.source, draft.model_text = Source.MODEL, reply.answer
    try:
        value = asks.parse_query(reply)
    except asks.AskError as exc:
        raise StepFailed(str(exc)) from None
    ctx.values[spec.save_as] = value
    draft.message = f"{spec.save_as} = {value!r}"
