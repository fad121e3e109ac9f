"""Carry out one task-file step: ground it, act through the validator, check, and record.

Every pointer step ends as a typed action checked by :func:`actions.validate.validate` before
the input device sees it, whether its target came from OCR, the model, the cache or the file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from actions.executor import InputDevice, execute
from actions.parse import ActionError
from actions.types import MAX_TYPE_CHARS, AnyAction, Click, Key, Scroll, Type
from actions.validate import validate
from agent.cache import CacheMode, GroundingCache, Hit, Stale, cache_key, replay
from agent.loop import Budget, Clock, ModelSettings, run_agent
from agent.records import StepRecord
from agent.rundir import RunDir
from agent.taskfile import Step, Task, redact, substitute
from agent.taskrecords import PixelBox, ScriptStep, Source
from grounding.capture import Frame, Screen
from grounding.geometry import Region, View
from grounding.ocr import TextReader
from grounding.preprocess import prepare
from grounding.stable import wait_stable
from grounding.template import FlatSnippet, cut
from grounding.textmatch import AmbiguousText, TextLookupError, find_text
from grounding.visual import compare, load_png, save_png
from models import asks
from models.runtime import Reply, Request, Runtime

log = logging.getLogger(__name__)

POLL_S = 0.3  # between OCR reads while waiting for text


class StepFailed(Exception):
    """The step did not hold; the message says why (and ends the task)."""


@dataclass
class ModelAccess:
    """The vision model, opened on first use: tasks without model steps never load it."""

    opener: Callable[[], Runtime] | None
    settings: ModelSettings = field(default_factory=ModelSettings)
    _runtime: Runtime | None = None

    def runtime(self) -> Runtime:
        """The open runtime; fails the step when no model was configured."""
        if self._runtime is None:
            if self.opener is None:
                raise StepFailed("this step needs the vision model; give --model or --replay")
            self._runtime = self.opener()
        return self._runtime

    def ask(self, request: Request) -> Reply:
        """One model call."""
        return self.runtime().complete(request)

    def close(self) -> None:
        """Free the runtime if it was opened."""
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


@dataclass
class StepContext:
    """What every step needs: the task, the devices, the stores, and the task's values."""

    task: Task
    screen: Screen
    device: InputDevice
    reader: TextReader
    cache: GroundingCache
    model: ModelAccess
    clock: Clock
    record: RunDir
    values: dict[str, str]
    baselines: Path
    update_baselines: bool = False
    deadline: float = float("inf")
    settle_s: float = 2.0

    def text(self, template: str) -> str:
        """A spec string with variables filled in (secrets included: for typing only)."""
        return substitute(template, self.values)

    def shown(self, template: str) -> str:
        """A spec string as the model and the records may see it: secrets stay hidden."""
        return redact(substitute(template, self.values), self.task.secrets)


@dataclass
class _Draft:
    message: str = ""
    source: Source | None = None
    box: PixelBox | None = None
    point: tuple[int, int] | None = None
    screenshot: str | None = None
    diff: str | None = None
    model_text: str = ""
    candidates: tuple[str, ...] = ()
    agent_steps: tuple[StepRecord, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


def run_step(step: Step, index: int, ctx: StepContext) -> ScriptStep:
    """Run one step; failures come back as a failed record, never as an exception."""
    draft, start = _Draft(), ctx.clock.now()
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


# ------------------------------------------------------------------ shared pieces

def _lap(draft: _Draft, phase: str, started: float) -> None:
    draft.timings[phase] = draft.timings.get(phase, 0.0) + time.perf_counter() - started


def _grab(ctx: StepContext, draft: _Draft) -> Frame:
    t = time.perf_counter()
    frame = ctx.screen.grab()
    _lap(draft, "capture", t)
    return frame


def _keep(ctx: StepContext, draft: _Draft, frame: Frame, name: str) -> None:
    t = time.perf_counter()
    draft.screenshot = ctx.record.save_image(name, frame.rgb)
    _lap(draft, "record", t)


def _act(ctx: StepContext, draft: _Draft, action: AnyAction, frame: Frame) -> None:
    """Validate against the screen, send to the device, then wait for the screen to settle."""
    view = View.full(frame.screen, frame.width, frame.height)
    try:
        resolved = validate(action, view)
    except ActionError as exc:
        raise StepFailed(f"refused before acting: {exc}") from None
    t = time.perf_counter()
    execute(resolved, ctx.device, sleep=ctx.clock.sleep)
    _lap(draft, "act", t)
    t = time.perf_counter()
    settled = wait_stable(ctx.screen, ctx.clock, timeout_s=ctx.settle_s)
    _lap(draft, "settle", t)
    if not settled.stable:
        log.info("screen still changing %.1fs after %s", settled.seconds, action.action)


def _norm_box(box: PixelBox, frame: Frame) -> tuple[float, float, float, float]:
    """A zero-size normalized box on the middle of the centre pixel of ``box``.

    Aiming at the pixel's middle keeps float rounding from moving the click by one pixel.
    """
    cx, cy = _center(box)
    nx, ny = (cx + 0.5) / frame.width, (cy + 0.5) / frame.height
    return (nx, ny, nx, ny)


def _center(box: PixelBox) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def _region(spec_region: tuple[int, int, int, int] | None, frame: Frame) -> PixelBox | None:
    if spec_region is None:
        return None
    x1, y1 = min(spec_region[0], frame.width - 1), min(spec_region[1], frame.height - 1)
    x2, y2 = min(spec_region[2], frame.width), min(spec_region[3], frame.height)
    if x2 <= x1 or y2 <= y1:
        raise StepFailed(f"region {list(spec_region)} lies outside the "
                         f"{frame.width}x{frame.height} screen")
    return (x1, y1, x2, y2)


def _read_text(ctx: StepContext, draft: _Draft, frame: Frame, query: str,
               region: PixelBox | None) -> PixelBox:
    """Find ``query`` by OCR; ambiguity and absence fail the step with the candidates."""
    t = time.perf_counter()
    try:
        lines = ctx.reader.read(frame.rgb, region)
        match = find_text(lines, query, region=region)
    except AmbiguousText as exc:
        draft.candidates = tuple(f"{c.text!r} at {c.box}" for c in exc.candidates)
        raise StepFailed(str(exc)) from None
    except TextLookupError as exc:
        draft.candidates = tuple(getattr(exc, "seen", ()))
        raise StepFailed(str(exc)) from None
    finally:
        _lap(draft, "ocr", t)
    draft.source = Source.OCR
    draft.message = f"found {match.text!r} ({match.how}, score {match.score:.2f})"
    return match.box


def _locate(ctx: StepContext, draft: _Draft, frame: Frame, target: str,
            region: PixelBox | None) -> PixelBox:
    """Ask the model where the target is (direct mode); the answer maps back to pixels."""
    settings = ctx.model.settings
    area = None if region is None else Region(region[0], region[1], region[2] - region[0],
                                              region[3] - region[1])
    t = time.perf_counter()
    image = prepare(frame, max_patches=settings.max_patches, region=area)
    reply = ctx.model.ask(asks.locate_request(target, image, temperature=settings.temperature))
    _lap(draft, "model", t)
    draft.model_text = reply.answer
    try:
        click = asks.parse_locate(reply)
    except asks.AskError as exc:
        raise StepFailed(str(exc)) from None
    r = image.view.region
    x1, y1, x2, y2 = click.box
    box = (int(r.x + x1 * r.width), int(r.y + y1 * r.height),
           max(int(r.x + x2 * r.width), int(r.x + x1 * r.width) + 1),
           max(int(r.y + y2 * r.height), int(r.y + y1 * r.height) + 1))
    draft.source = Source.MODEL
    draft.message = f"the model located {target!r}"
    return box


def _ground(ctx: StepContext, draft: _Draft, frame: Frame, *, text: str | None,
            target: str | None, region: PixelBox | None, key_text: str) -> PixelBox:
    """A target's box: a verified cache entry, else fresh OCR or model grounding (then cached)."""
    key = cache_key(ctx.task.name, key_text, (frame.width, frame.height))
    note = ""
    if ctx.cache.mode is not CacheMode.OFF:
        t = time.perf_counter()
        outcome = replay(ctx.cache, key, frame.rgb)
        _lap(draft, "cache", t)
        if isinstance(outcome, Hit):
            located = outcome.located
            draft.source = Source.CACHE
            moved = f", relocated by {located.offset}" if located.moved else ", in place"
            draft.message = f"cache hit verified on screen (score {located.score:.2f}{moved})"
            return located.box
        if isinstance(outcome, Stale):
            if ctx.cache.mode is CacheMode.READ_ONLY:
                raise StepFailed(f"cached target not verified on screen: {outcome.reason}; "
                                 "refusing to click (cache is read-only)")
            note = f"; cache entry stale ({outcome.reason}), grounded again"
    if text is not None:
        box = _read_text(ctx, draft, frame, text, region)
    else:
        box = _locate(ctx, draft, frame, target or "", region)
    try:
        if ctx.cache.put(key, cut(frame.rgb, box), label=f"{ctx.task.name}: {key_text}"):
            note += "; cached"
    except FlatSnippet:
        note += "; not cached (the target has no distinctive pixels)"
    draft.message += note
    return box


# ------------------------------------------------------------------ step handlers

def _click(step: Step, ctx: StepContext, draft: _Draft) -> None:
    spec = step.spec
    frame = _grab(ctx, draft)
    region = _region(spec.region, frame)
    if spec.at is not None:
        x, y = spec.at
        box = (x, y, x + 1, y + 1)
        draft.source, draft.message = Source.COORDS, f"at ({x}, {y})"
    else:
        text = ctx.text(spec.text) if spec.text is not None else None
        target = ctx.shown(spec.target) if spec.target is not None else None
        key_text = f"text:{spec.text}" if spec.text is not None else f"target:{spec.target}"
        box = _ground(ctx, draft, frame, text=text, target=target, region=region,
                      key_text=f"{key_text}@{spec.region}")
    draft.box, draft.point = box, _center(box)
    _keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    _act(ctx, draft, Click(action="click", box=_norm_box(box, frame), button=spec.button,
                           clicks=spec.clicks), frame)


def _type(step: Step, ctx: StepContext, draft: _Draft) -> None:
    text = ctx.text(step.spec)
    frame = _grab(ctx, draft)
    for start in range(0, len(text), MAX_TYPE_CHARS):
        _act(ctx, draft, Type(action="type", text=text[start:start + MAX_TYPE_CHARS]), frame)
    draft.message = f"typed {len(text)} characters"
    _keep(ctx, draft, _grab(ctx, draft), f"step-{step.position + 1:03d}")


def _key(step: Step, ctx: StepContext, draft: _Draft) -> None:
    frame = _grab(ctx, draft)
    _act(ctx, draft, Key(action="key", keys=step.spec), frame)
    draft.message = f"pressed {step.spec}"
    _keep(ctx, draft, _grab(ctx, draft), f"step-{step.position + 1:03d}")


def _scroll(step: Step, ctx: StepContext, draft: _Draft) -> None:
    spec = step.spec
    frame = _grab(ctx, draft)
    if spec.text is not None:
        box = _ground(ctx, draft, frame, text=ctx.text(spec.text), target=None,
                      region=_region(spec.region, frame),
                      key_text=f"text:{spec.text}@{spec.region}")
    elif spec.at is not None:
        box = (spec.at[0], spec.at[1], spec.at[0] + 1, spec.at[1] + 1)
        draft.source = Source.COORDS
    else:
        cx, cy = frame.width // 2, frame.height // 2
        box = (cx, cy, cx + 1, cy + 1)
        draft.source = Source.COORDS
    draft.box, draft.point = box, _center(box)
    _keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    _act(ctx, draft, Scroll(action="scroll", box=_norm_box(box, frame),
                            direction=spec.direction, amount=spec.amount), frame)
    draft.message = (draft.message + "; " if draft.message else "") + \
        f"scrolled {spec.direction} {spec.amount}"


def _wait(step: Step, ctx: StepContext, draft: _Draft) -> None:
    ctx.clock.sleep(float(step.spec))
    draft.message = f"waited {float(step.spec):g}s"


def _poll_text(step: Step, ctx: StepContext, draft: _Draft, *, want: bool,
               default_timeout: float) -> None:
    """Read the screen until the text is there (``want``) or gone, or the time is up."""
    spec = step.spec
    query = ctx.text(spec.text)
    timeout = spec.timeout_s if "timeout_s" in spec.model_fields_set else default_timeout
    deadline = min(ctx.clock.now() + timeout, ctx.deadline)
    while True:
        frame = _grab(ctx, draft)
        region = _region(spec.region, frame)
        box, reason = _find(ctx, draft, frame, query, region)
        if (box is not None) == want or ctx.clock.now() >= deadline:
            break
        ctx.clock.sleep(POLL_S)
    _keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    # The report outlines the text found, or else the region that was searched.
    draft.box, draft.source = box if box is not None else region, Source.OCR
    shown = ctx.shown(spec.text)
    if want and box is None:
        raise StepFailed(f"{reason} (waited {timeout:g}s)")
    if not want and box is not None:
        raise StepFailed(f"text {shown!r} is on the screen at {box} (waited {timeout:g}s "
                         "for it to go)")
    draft.message = f"{shown!r} is on the screen" if want else f"{shown!r} is not on the screen"


def _find(ctx: StepContext, draft: _Draft, frame: Frame, query: str,
          region: PixelBox | None) -> tuple[PixelBox | None, str]:
    """Where the text is (any one place when it shows several times), or why it is not."""
    t = time.perf_counter()
    try:
        return find_text(ctx.reader.read(frame.rgb, region), query, region=region).box, ""
    except AmbiguousText as exc:
        draft.candidates = tuple(f"{c.text!r} at {c.box}" for c in exc.candidates)
        return exc.candidates[0].box, ""
    except TextLookupError as exc:
        draft.candidates = tuple(getattr(exc, "seen", ()))
        return None, str(exc)
    finally:
        _lap(draft, "ocr", t)


def _wait_for(step: Step, ctx: StepContext, draft: _Draft) -> None:
    _poll_text(step, ctx, draft, want=True, default_timeout=10.0)


def _expect(step: Step, ctx: StepContext, draft: _Draft) -> None:
    _poll_text(step, ctx, draft, want=True, default_timeout=3.0)


def _expect_not(step: Step, ctx: StepContext, draft: _Draft) -> None:
    _poll_text(step, ctx, draft, want=False, default_timeout=3.0)


def _screenshot(step: Step, ctx: StepContext, draft: _Draft) -> None:
    spec = step.spec
    frame = _grab(ctx, draft)
    _keep(ctx, draft, frame, spec.name)
    if not spec.compare:
        draft.message = f"saved {draft.screenshot}"
        return
    baseline = ctx.baselines / f"{spec.name}.png"
    if ctx.update_baselines or not baseline.exists():
        verb = "updated" if baseline.exists() else "recorded (none was stored)"
        baseline.parent.mkdir(parents=True, exist_ok=True)
        save_png(baseline, np.ascontiguousarray(frame.rgb))
        draft.message = f"baseline {verb}: {baseline}"
        return
    t = time.perf_counter()
    result = compare(load_png(baseline), frame.rgb, region=_region(spec.region, frame),
                     pixel_threshold=spec.pixel_threshold, tolerance=spec.tolerance)
    _lap(draft, "compare", t)
    draft.box = result.changed_box
    if result.diff is not None and not result.passed:
        draft.diff = ctx.record.save_image(f"{spec.name}-diff", result.diff)
    draft.message = result.message
    if not result.passed:
        raise StepFailed(f"differs from {baseline}: {result.message}")


def _expect_file(step: Step, ctx: StepContext, draft: _Draft) -> None:
    spec = step.spec
    path = Path(ctx.text(spec.path))
    if not path.is_absolute():
        path = ctx.task.path.parent / path
    shown = ctx.shown(spec.path)
    deadline = min(ctx.clock.now() + 5.0, ctx.deadline)  # an app may still be writing
    while True:
        problem = _file_problem(path, ctx.text(spec.contains) if spec.contains else None)
        if problem is None or ctx.clock.now() >= deadline:
            break
        ctx.clock.sleep(POLL_S)
    if problem is not None:
        raise StepFailed(f"{shown}: {problem}")
    draft.message = f"{shown} exists" + (" and holds the expected text" if spec.contains else "")


def _file_problem(path: Path, contains: str | None) -> str | None:
    try:
        data = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if contains is not None and contains not in data:
        return f"does not contain the expected text ({len(data)} characters read)"
    return None


def _do(step: Step, ctx: StepContext, draft: _Draft) -> None:
    from dataclasses import replace

    sub = RunDir(ctx.record.path / "agent", name=f"step-{step.position + 1:03d}")
    remaining = max(1.0, ctx.deadline - ctx.clock.now())
    result = run_agent(ctx.shown(step.spec), runtime=ctx.model.runtime(), screen=ctx.screen,
                       device=ctx.device, record=sub, clock=ctx.clock,
                       budget=Budget(max_steps=ctx.task.budget.max_steps,
                                     max_seconds=min(remaining, ctx.task.budget.timeout_s)),
                       settings=ctx.model.settings)
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


def _check(step: Step, ctx: StepContext, draft: _Draft) -> None:
    frame = _grab(ctx, draft)
    _keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    settings = ctx.model.settings
    t = time.perf_counter()
    reply = ctx.model.ask(asks.check_request(
        ctx.shown(step.spec), prepare(frame, max_patches=settings.max_patches),
        max_reasoning_tokens=settings.max_reasoning_tokens, temperature=settings.temperature))
    _lap(draft, "model", t)
    draft.source = Source.MODEL
    draft.model_text = (f"<think>{reply.reasoning}</think>\n" if reply.reasoning else "") + \
        reply.answer
    try:
        verdict = asks.parse_check(reply)
    except asks.AskError as exc:
        raise StepFailed(str(exc)) from None
    if not verdict.holds:
        raise StepFailed("the model judged that the statement does not hold")
    draft.message = "the model judged that the statement holds"


def _query(step: Step, ctx: StepContext, draft: _Draft) -> None:
    spec = step.spec
    frame = _grab(ctx, draft)
    _keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    settings = ctx.model.settings
    t = time.perf_counter()
    reply = ctx.model.ask(asks.query_request(ctx.shown(spec.ask),
                                             prepare(frame, max_patches=settings.max_patches),
                                             temperature=settings.temperature))
    _lap(draft, "model", t)
    draft.source, draft.model_text = Source.MODEL, reply.answer
    try:
        value = asks.parse_query(reply)
    except asks.AskError as exc:
        raise StepFailed(str(exc)) from None
    ctx.values[spec.save_as] = value
    draft.message = f"{spec.save_as} = {value!r}"


_HANDLERS: dict[str, Callable[[Step, StepContext, _Draft], None]] = {
    "click": _click, "type": _type, "key": _key, "scroll": _scroll, "wait": _wait,
    "wait_for": _wait_for, "expect": _expect, "expect_not": _expect_not,
    "screenshot": _screenshot, "expect_file": _expect_file, "do": _do, "check": _check,
    "query": _query,
}
