"""What every task-file step shares: its context, the model handle, and small helpers.

Every pointer step ends as a typed action checked by :func:`actions.validate.validate` before
the input device sees it, whether its target came from OCR, the model, the cache or the file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deskpilot.actions.executor import InputDevice, execute
from deskpilot.actions.gate import Gate, describe
from deskpilot.actions.parse import ActionError
from deskpilot.actions.policy import KnownText
from deskpilot.actions.types import AnyAction
from deskpilot.actions.validate import validate
from deskpilot.agent.clock import Clock
from deskpilot.agent.records import StepRecord
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.settings import ModelSettings
from deskpilot.agent.tasks.cache import GroundingCache
from deskpilot.agent.tasks.results import Candidate, Source
from deskpilot.agent.tasks.spec import Task, substitute
from deskpilot.grounding.a11y import CachedTree
from deskpilot.grounding.capture import Frame, Screen
from deskpilot.grounding.geometry import PixelBox, View
from deskpilot.grounding.ocr import TextReader
from deskpilot.grounding.stable import wait_stable
from deskpilot.grounding.textmatch import (
    AmbiguousText,
    TextMatch,
    TextNotFound,
    find_text,
)
from deskpilot.grounding.windows import WindowProbe
from deskpilot.models.runtime import Reply, Request, Runtime

log = logging.getLogger(__name__)

POLL_S = 0.3  # between OCR reads while waiting for text


class StepFailed(Exception):
    """The step did not hold; the message says why (and ends the task)."""


class TargetMissing(StepFailed):
    """A pointer step's target could not be located (OCR, the model, or the cache)."""


class ActionRefused(StepFailed):
    """The validator or the safety gate stopped an action before any input was sent."""


class StatementFalse(StepFailed):
    """The model judged that a ``check`` statement does not hold."""


class OutOfTime(StepFailed):
    """The task's time budget ran out inside the step."""


class RecordFailed(StepFailed):
    """A record of the run (a screenshot, the step list) could not be written: stop acting."""


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
    gate: Gate | None = None  # the safety policy; None only in tests that do not need it
    windows: WindowProbe | None = None  # which window has the focus; None: not known here
    occurrences: dict[str, int] = field(default_factory=dict)  # cache keys used so far
    a11y: CachedTree | None = None  # the accessibility tree; None where there is none

    def left(self) -> float:
        """Seconds left of the task's time budget (never negative)."""
        return max(0.0, self.deadline - self.clock.now())

    def bounded(self, seconds: float) -> float:
        """``seconds``, cut to what is left of the task's time budget."""
        return min(seconds, self.left())

    def text(self, template: str) -> str:
        """A spec string with variables filled in (secrets included: for typing only)."""
        return substitute(template, self.values)

    def shown(self, template: str) -> str:
        """A spec string as the model and the records may see it: secrets stay hidden."""
        return self.record.redaction.text(substitute(template, self.values))


@dataclass
class Draft:
    """What a step has found out so far; :func:`.steps.run_step` freezes it into a record."""

    message: str = ""
    source: Source | None = None
    box: PixelBox | None = None
    point: tuple[int, int] | None = None
    screenshot: str | None = None
    diff: str | None = None
    baseline: str | None = None
    model_text: str = ""
    candidates: tuple[Candidate, ...] = ()
    known: KnownText | None = None  # the text grounding already read at the target, for the gate
    agent_steps: tuple[StepRecord, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


def lap(draft: Draft, phase: str, started: float) -> None:
    draft.timings[phase] = draft.timings.get(phase, 0.0) + time.perf_counter() - started


def grab(ctx: StepContext, draft: Draft) -> Frame:
    t = time.perf_counter()
    frame = ctx.screen.grab()
    lap(draft, "capture", t)
    return frame


def keep(ctx: StepContext, draft: Draft, frame: Frame, name: str) -> None:
    t = time.perf_counter()
    draft.screenshot = ctx.record.save_image(name, frame.rgb)
    lap(draft, "record", t)


def act(ctx: StepContext, draft: Draft, action: AnyAction, frame: Frame, *,
        settle: bool = True, type_interval: float = 0.0) -> None:
    """Validate against the screen, send to the device, then wait for the screen to settle.

    Nothing is sent when a record of the run could not be written (a full disk): every
    screenshot queued so far is on disk, or the step fails, before any input. The gate gets
    the text the step's grounding already read (``draft.known``) and does not read it again.
    """
    view = View.full(frame.screen, frame.width, frame.height)
    try:
        resolved = validate(action, view)
    except ActionError as exc:
        raise ActionRefused(f"refused before acting: {exc}") from None
    if ctx.gate is not None:
        t = time.perf_counter()
        blocked = ctx.gate.check(resolved, frame, draft.known)
        lap(draft, "policy", t)
        if blocked is not None:
            raise ActionRefused(describe(blocked))
    t = time.perf_counter()
    lost = ctx.record.flush()
    lap(draft, "record", t)
    if lost:
        raise RecordFailed(f"{lost} screenshot(s) of this run could not be written (is the disk "
                           "full?); no input is sent without a record")
    t = time.perf_counter()
    try:
        execute(resolved, ctx.device, sleep=ctx.clock.sleep, type_interval=type_interval)
    except ValueError as exc:  # a text the keyboard cannot type: refused before any key
        raise ActionRefused(str(exc)) from None
    lap(draft, "act", t)
    if not settle:
        return
    t = time.perf_counter()
    settled = wait_stable(ctx.screen, ctx.clock, timeout_s=ctx.bounded(ctx.settle_s))
    lap(draft, "settle", t)
    if not settled.stable:
        log.info("screen still changing %.1fs after %s", settled.seconds, action.action)


def point_box(box: PixelBox, frame: Frame) -> tuple[float, float, float, float]:
    """A zero-size normalized box on the middle of the centre pixel of ``box``.

    Aiming at the pixel's middle keeps float rounding from moving the click by one pixel.
    """
    cx, cy = center(box)
    nx, ny = (cx + 0.5) / frame.width, (cy + 0.5) / frame.height
    return (nx, ny, nx, ny)


def center(box: PixelBox) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def off_screen(box: tuple[int, ...], size: tuple[int, int]) -> str | None:
    """Why a point ``(x, y)`` or region ``(x1, y1, x2, y2)`` is not on a screen of ``size``."""
    width, height = size
    if len(box) == 2:
        x, y = box
        if x >= width or y >= height:
            return f"point {list(box)} is outside the {width}x{height} screen"
        return None
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        return f"region {list(box)} is empty or inverted (x1 < x2 and y1 < y2 are needed)"
    if x2 > width or y2 > height:
        return (f"region {list(box)} reaches outside the {width}x{height} screen "
                f"(at most [.., .., {width}, {height}])")
    return None


def clip_to_frame(spec_region: tuple[int, int, int, int] | None, frame: Frame) -> PixelBox | None:
    """A step's region as a box on the frame; a region not wholly on the screen fails the step
    (clipping it would search a sliver and pass by accident)."""
    if spec_region is None:
        return None
    problem = off_screen(spec_region, (frame.width, frame.height))
    if problem is not None:
        raise StepFailed(problem)
    return spec_region


def read_text(ctx: StepContext, draft: Draft, frame: Frame, query: str,
              region: PixelBox | None) -> TextMatch:
    """Find ``query`` by OCR (timed as ``ocr``), keeping the candidates of this read on the
    draft: the places it matched when ambiguous, the closest texts when absent.

    Raises :class:`AmbiguousText` (several places) or another :class:`TextLookupError`.
    """
    t = time.perf_counter()
    draft.candidates = ()  # a poll that finds the text at last has nothing left to explain
    lines = ctx.reader.read(frame.rgb, region)
    lap(draft, "ocr", t)
    draft.known = KnownText(tuple(lines), region or (0, 0, frame.width, frame.height))
    try:
        return find_text(lines, query, region=region)
    except AmbiguousText as exc:
        draft.candidates = tuple(Candidate(c.text, c.box, via="ocr") for c in exc.candidates)
        raise
    except TextNotFound as exc:
        draft.candidates = tuple(Candidate(m.text, m.box, via="ocr") for m in exc.near)
        raise
