"""The agent loop: observe → think → act → record, until done, failed, or out of budget."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from deskpilot.actions.executor import InputDevice, Interrupted, execute
from deskpilot.actions.gate import ActionDenied, Gate, describe
from deskpilot.actions.parse import ActionError, Plan, parse_action, parse_plan
from deskpilot.actions.schema import action_grammar, describe_actions, max_answer_chars
from deskpilot.actions.types import TERMINAL_ACTIONS, AnyAction, Done, Fail, Wait, summarize
from deskpilot.actions.validate import validate
from deskpilot.agent.clock import Clock, SystemClock
from deskpilot.agent.loopguard import LoopGuard, action_key
from deskpilot.agent.records import Outcome, RunResult, Status, StepRecord, Timings
from deskpilot.agent.rundir import RunDir, RunDirError
from deskpilot.agent.settings import Budget, ModelSettings
from deskpilot.agent.supervise import Points, Supervisor, Verdict
from deskpilot.agent.takeover import TakeoverWatch
from deskpilot.agent.zoomstep import Zoomed, zoom_in
from deskpilot.grounding.capture import CaptureError, Frame, Screen
from deskpilot.grounding.geometry import Point, View
from deskpilot.grounding.preprocess import ModelImage, prepare
from deskpilot.models.grounder import Grounder, GroundingPrompt, Located
from deskpilot.models.prompt import agent_prompt
from deskpilot.models.runtime import Reply, Request, Runtime, RuntimeFailure

log = logging.getLogger(__name__)

HISTORY_STEPS = 12  # older steps drop out of the prompt; the trajectory keeps them all


def run_agent(task: str, *, runtime: Runtime, screen: Screen, device: InputDevice | None,
              record: RunDir, clock: Clock | None = None, budget: Budget = Budget(),
              settings: ModelSettings = ModelSettings(), gate: Gate | None = None,
              takeover: TakeoverWatch | None = None,
              on_step: Callable[[StepRecord], object] | None = None,
              supervisor: Supervisor | None = None,
              grounder: Runtime | None = None) -> RunResult:
    """Run one task to its end. ``device=None`` validates actions without sending them.

    With ``settings.grounding`` native (the default), each step is two calls: ``runtime``
    plans one action whose pointer targets are descriptions, in ``settings.mode``; then the
    model's own grounding call, direct and greedy, on ``grounder`` (default: the same
    runtime) locates each target on the same screenshot. Joint: one call answers the action
    with its boxes.

    ``gate`` (the safety policy and the person's approval) sees every action before the
    device does; what it stops is recorded as denied and explained to the model. With
    ``takeover``, the person's own mouse or keyboard input ends the run before the next action,
    unless a ``supervisor`` (the TUI) is watching: then the agent waits until the person hands
    control back, and looks again. The supervisor can also pause, hold each action for a key or
    an approval, add a hint to the next prompt, and stop the run mid-generation or mid-action.
    """
    run = _Run(task, runtime=runtime, screen=screen, device=device, record=record,
               clock=clock or SystemClock(), budget=budget, settings=settings, gate=gate,
               takeover=takeover, on_step=on_step, supervisor=supervisor,
               grounder=Grounder(grounder or runtime, settings.grounding,
                                 temperature=settings.temperature))
    try:
        for index in range(1, budget.max_steps + 1):
            if run.clock.now() - run.started > budget.max_seconds:
                return run.finish(Status.TIMEOUT,
                                  f"wall-time budget of {budget.max_seconds:g}s spent")
            ended = run.step(index)
            if ended is not None:
                return ended
    except RunDirError as exc:  # fail closed: no further action without a record
        return run.finish(Status.RECORD_ERROR, str(exc))
    return run.finish(Status.MAX_STEPS, f"step budget of {budget.max_steps} spent")


class _Run:
    """One run's state: its steps so far, the feedback for the model, the error streak."""

    def __init__(self, task: str, *, runtime: Runtime, screen: Screen,
                 device: InputDevice | None, record: RunDir, clock: Clock, budget: Budget,
                 settings: ModelSettings, gate: Gate | None, takeover: TakeoverWatch | None,
                 on_step: Callable[[StepRecord], object] | None,
                 supervisor: Supervisor | None, grounder: Grounder) -> None:
        self.runtime, self.screen, self.device, self.record = runtime, screen, device, record
        self.grounder = grounder
        self.clock, self.budget, self.settings, self.gate = clock, budget, settings, gate
        self.on_step, self.takeover, self.supervisor = on_step, takeover, supervisor
        self.asking = _Asking.of(task, settings)
        self.loops = LoopGuard(repeats=budget.max_repeats)
        self.steps: list[StepRecord] = []
        self.feedback: str | None = None
        self.errors = 0
        self.started = clock.now()

    def finish(self, status: Status, message: str) -> RunResult:
        """Record the outcome (best effort: it is returned and printed either way)."""
        result = RunResult(status, message, tuple(self.steps), self.record.path)
        try:
            self.record.finish(result)
        except OSError as exc:
            log.error("could not write the run's result: %s", exc)
        log.info("run ended: %s (%s)", status.value, message)
        return result

    def step(self, index: int) -> RunResult | None:
        """Observe, think, check, act and record once; a result when the run is over."""
        sup = self.supervisor
        if sup is not None and not sup.before_think(index):
            return self.finish(Status.INTERRUPTED, self._stop_message())
        lap = _Laps(self.clock)
        located: list[Located] = []
        try:
            frame = self.screen.grab()
            lap("capture")
            if sup is not None:
                sup.observed(index, frame.rgb)
            image = prepare(frame, max_patches=self.settings.max_patches)
            lap("preprocess")
            reply = self.runtime.complete(self.asking.request(
                image, self.steps, self.feedback, sup.take_hint() if sup else None,
                sup.streamed if sup else None))
            action = (self._grounded(parse_plan(reply.answer), image, located)
                      if self.asking.described else parse_action(reply.answer))
            lap("model")
            zoom = _decide(action, frame, image.view, grounder=self.grounder,
                           settings=self.settings, clock=self.clock, gate=self.gate,
                           shown=partial(sup.decided, index) if sup else None,
                           asking=self._own_input)
            lap("model")
        except ActionError as exc:  # unusable or not allowed: the model is told, and may retry
            lap("model")  # deciding includes validation and any wait for the person's answer
            denied = exc.action if isinstance(exc, ActionDenied) else None
            return self._unusable(_Seen(index, frame.rgb, image, reply, lap,
                                        located=tuple(located)), str(exc), denied)
        except RuntimeFailure as exc:
            return self.finish(Status.RUNTIME_ERROR, f"model runtime failed: {exc}")
        except KeyboardInterrupt:
            return self.finish(Status.INTERRUPTED, self._stop_message())
        except (CaptureError, OSError) as exc:
            return self.finish(Status.INPUT_ERROR, f"screen capture failed: {exc}")
        self.errors, self.feedback = 0, None
        return self._act(_Seen(index, frame.rgb, image, reply, lap, zoom, tuple(located)), zoom)

    def _grounded(self, plan: Plan, image: ModelImage, located: list[Located]) -> AnyAction:
        """The planned action with a box for each target, from one grounding call each on the
        planner's screenshot; ActionError (back to the model) when a target is not found."""
        boxes = []
        for target in plan.targets:
            found = self.grounder.locate(target, image)
            located.append(found)
            if found.box is None:
                raise ActionError(f"could not locate {target!r}: {found.note}; describe the "
                                  "target differently or choose another action")
            if found.note:
                log.info("grounding %r: %s", target, found.note)
            boxes.append(found.box)
        return plan.with_boxes(tuple(boxes))

    def _unusable(self, seen: _Seen, error: str, denied: AnyAction | None) -> RunResult | None:
        self.errors += 1
        self.feedback = error
        self._save(seen, outcome=Outcome.REJECTED if denied is None else Outcome.DENIED,
                   action=denied, error=error)
        if self.errors >= self.budget.max_consecutive_errors:
            return self.finish(Status.TOO_MANY_ERRORS, f"{self.errors} unusable or refused "
                                                        f"replies in a row; last: {error}")
        return None

    def _act(self, seen: _Seen, zoom: Zoomed) -> RunResult | None:
        resolved = zoom.resolved
        action = resolved.action
        terminal = action.action in TERMINAL_ACTIONS
        person = self.takeover.taken() if self.takeover is not None else None
        if person is not None:  # the screen the decision saw may be gone: do nothing
            return self._taken_over(seen, person, action)
        if terminal or self.supervisor is None:
            verdict = Verdict.GO
        else:
            with self._own_input():
                verdict = self.supervisor.before_act(seen.index, summarize(action))
        if verdict is Verdict.STOP or self._stopping():
            return self.finish(Status.INTERRUPTED, self._stop_message())
        if verdict is Verdict.DENY:
            return self._unusable(seen, "not approved by the person", action)
        try:
            if self.device is not None and not terminal:
                with self._own_input():
                    watched = self.supervisor is not None or self.takeover is not None
                    execute(resolved, self.device, sleep=self.clock.sleep,
                            should_stop=self._stopping if watched else None)
        except (KeyboardInterrupt, Interrupted) as exc:  # everything pressed is released
            return self.finish(Status.INTERRUPTED, f"{self._stop_message()} during "
                                                   f"{action.action}: {exc or 'interrupted'}")
        except Exception as exc:  # the executor has released every key and button already
            log.exception("input device failed")
            return self.finish(Status.INPUT_ERROR, f"input failed during {action.action}: {exc}")
        seen.lap("act")
        outcome = (Outcome.TERMINAL if terminal
                   else Outcome.EXECUTED if self.device is not None else Outcome.DRY_RUN)
        self._save(seen, outcome=outcome, action=action, points=resolved.points)
        if terminal:
            return self.finish(*_terminal_status(action))
        # Waiting on an unchanged screen is what waiting is for; the budgets bound it.
        stuck = None if isinstance(action, Wait) else self.loops.observe(
            action_key(action), seen.rgb, label=summarize(action))
        if stuck is not None:
            return self.finish(Status.LOOP_DETECTED, stuck)
        return None

    def _taken_over(self, seen: _Seen, person: str, action: AnyAction) -> RunResult | None:
        """Without a supervisor the run ends; with one, wait for the person, then look again."""
        if self.supervisor is None or self.takeover is None:
            return self.finish(Status.TAKEN_OVER, f"you have control ({person}); "
                                                  f"{action.action} not carried out")
        handed_back = self.supervisor.taken_over(person)
        did = self.takeover.reset()
        self._save(seen, outcome=Outcome.TAKEN_OVER, action=action,
                   error="the person took control" + (f" and did: {'; '.join(did)}" if did
                                                      else ""))
        return None if handed_back else self.finish(Status.INTERRUPTED, self._stop_message())

    def _stopping(self) -> bool:
        """The person asked to stop, in the interface or with the kill switch."""
        return ((self.supervisor is not None and self.supervisor.stopping())
                or (self.takeover is not None and self.takeover.killed()))

    def _stop_message(self) -> str:
        if self.takeover is not None and self.takeover.killed():
            return "stopped by the kill switch"
        reason = self.supervisor.stop_reason if self.supervisor is not None else None
        return reason or "stopped by the person"

    def _own_input(self) -> AbstractContextManager[None]:
        """Input now is the agent's own, or the person answering it: not a takeover."""
        return self.takeover.acting() if self.takeover is not None else nullcontext()

    def _save(self, seen: _Seen, **fields: Any) -> None:
        self.steps.append(_save(self.record, seen, self.on_step, **fields))


@dataclass(frozen=True, slots=True)
class _Asking:
    """What every step's request shares, worked out once per run."""

    task: str
    settings: ModelSettings
    grammar: str
    reference: str
    answer_limit: int
    described: bool  # the planner's form: targets in words, boxes from the grounding call

    @classmethod
    def of(cls, task: str, settings: ModelSettings) -> _Asking:
        allowed = settings.allowed
        described = settings.grounding is GroundingPrompt.NATIVE
        # A token is at least one character: the longest answer the grammar admits bounds it.
        return cls(task, settings, action_grammar(allowed, described=described),
                   describe_actions(allowed, described=described),
                   max_answer_chars(allowed, described=described) + 8, described)

    def request(self, image: ModelImage, steps: list[StepRecord], feedback: str | None,
                hint: str | None = None, on_text: Callable[[str], None] | None = None
                ) -> Request:
        """This step's request, in the layout of its form (see :func:`agent_prompt`)."""
        s = self.settings
        prompt = agent_prompt(self.task, actions_reference=self.reference, feedback=feedback,
                              history=[r.to_prompt_line() for r in steps[-HISTORY_STEPS:]],
                              hint=hint, described=self.described)
        return Request(prompt=prompt, image=image, mode=s.mode, grammar=self.grammar,
                       max_answer_tokens=self.answer_limit, temperature=s.temperature,
                       max_reasoning_tokens=s.max_reasoning_tokens, on_text=on_text)


def _decide(action: AnyAction, frame: Frame, view: View, *, grounder: Grounder,
            settings: ModelSettings, clock: Clock, gate: Gate | None,
            shown: Callable[[dict[str, Any], Points], None] | None = None,
            asking: Callable[[], AbstractContextManager[None]] = nullcontext) -> Zoomed:
    """Validate the answer, refine a small target (zoom on), show it, and pass the gate.

    Raises :class:`ActionError` for an unusable answer (zooming never rejects one) and
    :class:`ActionDenied` for an action the gate stopped; nothing reaches the device here.
    """
    first = validate(action, view)
    zoomed = Zoomed(first) if not settings.zoom else zoom_in(
        first, frame, view, grounder, now=clock.now, zoom_patches=settings.zoom_patches)
    action = zoomed.resolved.action
    if shown is not None:  # the person sees where it would land before anyone is asked
        shown(action.model_dump(), tuple((p.x, p.y) for p in zoomed.resolved.points))
    if gate is not None and action.action not in TERMINAL_ACTIONS:
        with asking():  # the gate may put a question to the person
            blocked = gate.check(zoomed.resolved, frame)
        if blocked is not None:
            raise ActionDenied(describe(blocked), action)
    return zoomed


def _terminal_status(action: AnyAction) -> tuple[Status, str]:
    if isinstance(action, Done):
        return Status.DONE, action.answer or "task reported complete"
    if isinstance(action, Fail):
        return Status.FAILED, action.reason
    return Status.ASKED_USER, action.question  # type: ignore[union-attr]


class _Laps:
    """Splits a step's time into named phases."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = clock.now()
        self.seconds: dict[str, float] = {}

    def __call__(self, phase: str) -> None:
        now = self._clock.now()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


@dataclass(frozen=True, slots=True)
class _Seen:
    """What one step observed and thought, before its record is written."""

    index: int
    rgb: np.ndarray
    image: ModelImage
    reply: Reply
    lap: _Laps
    zoom: Zoomed | None = None
    located: tuple[Located, ...] = ()


def _save(record: RunDir, seen: _Seen, on_step: Callable[[StepRecord], object] | None, *,
          outcome: Outcome, action: AnyAction | None = None, points: tuple[Point, ...] = (),
          error: str | None = None) -> StepRecord:
    """Write the screenshot and the step line; the record phase is timed up to the line."""
    index, image, reply, lap = seen.index, seen.image, seen.reply, seen.lap
    zoom_tokens = seen.zoom.image_tokens if seen.zoom is not None else 0
    zoom_timings = seen.zoom.timings if seen.zoom is not None else {}
    # Image tokens the grounding calls evaluated (none when the planner's image was kept).
    ground_tokens = sum(g.reply.image_tokens - g.reply.reused_image_tokens
                        for g in seen.located)
    ground_timings: dict[str, float] = {}
    for g in seen.located:
        for key, value in g.reply.timings.items():
            ground_timings[f"ground_{key}"] = ground_timings.get(f"ground_{key}", 0.0) + value
    shot = record.save_screenshot(index, seen.rgb)
    lap("record")
    step = StepRecord(
        index=index, outcome=outcome, answer=reply.answer, reasoning=reply.reasoning,
        summary=summarize(action) if action is not None else "unusable reply",
        action=action.model_dump() if action is not None else None,
        points=tuple((p.x, p.y) for p in points), error=error, screenshot=shot,
        image_size=(image.view.image_width, image.view.image_height),
        image_tokens=reply.image_tokens + ground_tokens + zoom_tokens,
        zoom_image_tokens=zoom_tokens,
        output_tokens=reply.output_tokens + sum(g.reply.output_tokens for g in seen.located),
        timings=Timings(**lap.seconds),
        model_timings={**reply.timings, **ground_timings, **zoom_timings},
        grounding=tuple(g.to_json() for g in seen.located))
    record.append(step)
    if on_step is not None:
        on_step(step)
    return step
