"""Steps that act: click, type, key, scroll and wait, and the grounding of their targets."""

from __future__ import annotations

import logging
import time

from deskpilot.actions.executor import untypeable
from deskpilot.actions.labels import affirmative
from deskpilot.actions.policy import KnownText
from deskpilot.actions.text import plural
from deskpilot.actions.types import Click, Key, Scroll, Type
from deskpilot.agent.tasks.cache import CacheMode, Hit, Stale, cache_key, replay
from deskpilot.agent.tasks.kit import (
    ActionRefused,
    Draft,
    OutOfTime,
    StepContext,
    StepFailed,
    TargetMissing,
    act,
    center,
    clip_to_frame,
    grab,
    keep,
    lap,
    off_screen,
    point_box,
    read_text,
)
from deskpilot.agent.tasks.results import Candidate, Source
from deskpilot.agent.tasks.spec import ClickSpec, ScrollSpec, Step, TypeSpec
from deskpilot.grounding.a11y import (
    A11yElement,
    A11yError,
    A11yLookupError,
    find_element,
)
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import PixelBox, Region
from deskpilot.grounding.ocr import TextLine, clip_region
from deskpilot.grounding.preprocess import prepare
from deskpilot.grounding.stable import wait_stable
from deskpilot.grounding.template import FlatSnippet, cut
from deskpilot.grounding.textmatch import TextLookupError, find_text, same_text
from deskpilot.grounding.windows import WindowProbeError
from deskpilot.models.grounder import Grounder

log = logging.getLogger(__name__)


def _read_text(ctx: StepContext, draft: Draft, frame: Frame, query: str,
               region: PixelBox | None) -> tuple[PixelBox, str]:
    """Find ``query`` by OCR (its box and the text read there); ambiguity and absence fail the
    step with the candidates."""
    try:
        match = read_text(ctx, draft, frame, query, region)
    except TextLookupError as exc:
        raise TargetMissing(str(exc)) from None
    draft.source = Source.OCR
    draft.message = f"found {match.text!r} ({match.how}, score {match.score:.2f})"
    return match.box, match.text


def _elements(ctx: StepContext, draft: Draft, frame: Frame) -> list[A11yElement] | None:
    """The accessibility tree's elements with boxes in frame pixels; None without a tree."""
    if ctx.a11y is None:
        return None
    t = time.perf_counter()
    try:
        found = ctx.a11y.elements(frame.rgb)
    except A11yError as exc:
        log.info("the accessibility tree did not answer: %s", exc)
        return None
    finally:
        lap(draft, "a11y", t)
    return [e for e in (_on_frame(e, frame) for e in found) if e is not None]


def _on_frame(element: A11yElement, frame: Frame) -> A11yElement | None:
    """``element`` with its box in frame pixels, clipped; None when it is off the frame."""
    x1, y1, x2, y2 = frame.screen.pixel_box(element.box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, frame.width), min(y2, frame.height)
    if x2 <= x1 or y2 <= y1:
        return None
    return A11yElement(element.name, element.role, element.states, (x1, y1, x2, y2),
                       element.window)


def _element_on(ctx: StepContext, draft: Draft, frame: Frame, box: PixelBox
                ) -> A11yElement | None:
    """The accessible element at the centre of ``box`` (frame pixels), asked at that point
    alone: a cache hit does not walk the whole tree."""
    if ctx.a11y is None:
        return None
    screen = frame.screen
    x = screen.left + int((box[0] + box[2]) / 2 / screen.scale)
    y = screen.top + int((box[1] + box[3]) / 2 / screen.scale)
    t = time.perf_counter()
    try:
        found = ctx.a11y.at(frame.rgb, x, y)
    except A11yError as exc:
        log.info("the accessibility tree did not answer: %s", exc)
        return None
    finally:
        lap(draft, "a11y", t)
    return None if found is None else _on_frame(found, frame)


def _known_element(element: A11yElement, elements: list[A11yElement] | None) -> KnownText:
    """What the gate needs of an element the tree gave: its name and role, and its window's
    texts when the whole tree was read (else the gate reads the dialog around it)."""
    dialog = None if elements is None else \
        tuple(e.name for e in elements if e.window == element.window)
    return KnownText((TextLine(element.name, element.box, 1.0),), element.box,
                     label=element.name, dialog=dialog, role=element.role)


def _find_a11y(ctx: StepContext, draft: Draft, frame: Frame, name: str, *, role: str | None,
               region: PixelBox | None, required: bool) -> tuple[PixelBox, str] | None:
    """Ground ``name`` (and ``role``) on the accessibility tree; None when it cannot say and
    the step may read pixels instead (``required`` turns that into a failed step)."""
    elements = _elements(ctx, draft, frame)
    if elements is None:
        if required:
            raise TargetMissing("no accessibility tree on this display (the app does not "
                                "publish one, or there is no session bus); use text: for OCR")
        return None
    try:
        element = find_element(elements, name, role=role, region=region)
    except A11yLookupError as exc:
        draft.candidates = tuple(Candidate(e.name, e.box, via=f"a11y {e.role}")
                                 for e in exc.candidates)
        several = len(exc.candidates) > 1 and all(same_text(e.name, name)
                                                  for e in exc.candidates)
        if required or several:
            raise TargetMissing(str(exc)) from None
        return None
    draft.source = Source.A11Y
    draft.known = _known_element(element, elements)
    draft.message = f"found {element.role} {element.name!r} in the accessibility tree"
    return element.box, element.name


def _ocr_after_tree(ctx: StepContext, draft: Draft, frame: Frame, text: str,
                    region: PixelBox | None) -> tuple[PixelBox, str]:
    """``text`` by OCR once the tree did not have it; a miss lists what both sources had."""
    tree = draft.candidates
    try:
        return _read_text(ctx, draft, frame, text, region)
    except TargetMissing:
        draft.candidates += tree
        raise


def _locate(ctx: StepContext, draft: Draft, frame: Frame, target: str,
            region: PixelBox | None) -> PixelBox:
    """Ask the model where the target is (direct mode); the answer maps back to pixels."""
    settings = ctx.model.settings
    area = None if region is None else Region(region[0], region[1], region[2] - region[0],
                                              region[3] - region[1])
    t = time.perf_counter()
    image = prepare(frame, max_patches=settings.max_patches, region=area)
    grounder = Grounder(ctx.model.runtime(), settings.grounding,
                        temperature=settings.temperature)
    found = grounder.locate(target, image)
    lap(draft, "model", t)
    draft.model_text = found.reply.answer
    if found.box is None:
        raise TargetMissing(f"unusable location answer: {found.note}")
    r = image.view.region
    x1, y1, x2, y2 = found.box
    box = (int(r.x + x1 * r.width), int(r.y + y1 * r.height),
           max(int(r.x + x2 * r.width), int(r.x + x1 * r.width) + 1),
           max(int(r.y + y2 * r.height), int(r.y + y1 * r.height) + 1))
    draft.source = Source.MODEL
    draft.message = f"the model located {target!r}"
    return box


def _ground(ctx: StepContext, draft: Draft, frame: Frame, *, text: str | None,
            target: str | None, region: PixelBox | None, key_text: str,
            name: str | None = None, role: str | None = None) -> PixelBox:
    """A target's box: a verified cache entry, else fresh grounding (then cached): the
    accessibility tree for a name, the tree and then OCR for text, the model for a target."""
    key = cache_key(ctx.task.name, occurrence(ctx, key_text), (frame.width, frame.height))
    note = ""
    if ctx.cache.mode is not CacheMode.OFF:
        t = time.perf_counter()
        outcome = replay(ctx.cache, key, frame.rgb)
        lap(draft, "cache", t)
        if isinstance(outcome, Hit):
            located = outcome.located
            wrong = _label_changed(ctx, draft, frame, located.box, text=text or name,
                                   grounded_on=outcome.grounded_on)
            if wrong is None:
                draft.source = Source.CACHE
                moved = f", relocated by {located.offset}" if located.moved else ", in place"
                draft.message = (f"cache hit verified on screen (score {located.score:.2f}"
                                 f"{moved}; its label reads the same)")
                return located.box
            outcome = Stale(wrong, located.score, ambiguous=False)
        if isinstance(outcome, Stale):
            if ctx.cache.mode is CacheMode.READ_ONLY:
                raise TargetMissing(f"cached target not verified on screen: {outcome.reason}; "
                                 "refusing to click (cache is read-only)")
            note = f"; cache entry stale ({outcome.reason}), grounded again"
    if name is not None:
        found = _find_a11y(ctx, draft, frame, name, role=role, region=region, required=True)
        if found is None:  # required: a miss raised already
            raise TargetMissing(f"no accessible element {name!r}")
        box, grounded_on = found
    elif text is not None:
        found = _find_a11y(ctx, draft, frame, text, role=None, region=region, required=False)
        box, grounded_on = found or _ocr_after_tree(ctx, draft, frame, text, region)
    else:
        box = _locate(ctx, draft, frame, target or "", region)
        grounded_on = _label_on(ctx, draft, frame, box)
    try:
        snippet = cut(frame.rgb, box)
        if ctx.record.redaction and ctx.record.redaction.find(snippet.rgb):
            note += "; not cached (the target shows secret text)"
        elif ctx.cache.put(key, snippet, label=f"{ctx.task.name}: {key_text}",
                           grounded_on=grounded_on):
            note += "; cached"
    except FlatSnippet:
        note += "; not cached (the target has no distinctive pixels)"
    draft.message += note
    return box


def occurrence(ctx: StepContext, key_text: str) -> str:
    """``key_text`` marked with how many steps of the task grounded it before (``#2``, ...).

    Two ``click: "2"`` steps of one task are two entries: the second may be another "2" on
    another screen, and sharing one entry would make a read-only replay refuse it.
    """
    count = ctx.occurrences.get(key_text, 0) + 1
    ctx.occurrences[key_text] = count
    return key_text if count == 1 else f"{key_text}#{count}"


PARK_INSET = 10  # pixels from the bottom-right corner (never the corner: pyautogui's fail-safe)


def parking_spot(width: int, height: int) -> tuple[int, int]:
    """Where the pointer waits while a target is grounded and its crop taken."""
    return width - PARK_INSET, height - PARK_INSET


def settled_frame(ctx: StepContext, draft: Draft) -> Frame:
    """A frame to ground a target on: the pointer moved off the application, the screen still.

    A tooltip or hover highlight under the pointer would otherwise be part of the crop the
    cache keeps (or hide the target from OCR), and the next run would not find it.
    """
    frame = grab(ctx, draft)
    if ctx.cache.mode is CacheMode.OFF:
        return frame
    ctx.device.move(*parking_spot(frame.width, frame.height))
    t = time.perf_counter()
    wait_stable(ctx.screen, ctx.clock, timeout_s=ctx.bounded(ctx.settle_s))
    lap(draft, "settle", t)
    return grab(ctx, draft)


LABEL_MARGIN = 4  # pixels read around a target's box when its label is read again


def _label_on(ctx: StepContext, draft: Draft, frame: Frame, box: PixelBox) -> str:
    """The label on a target's box: the name of the accessible element there, else the text
    OCR reads on it, in reading order ("" when there is none)."""
    element = _element_on(ctx, draft, frame, box)
    if element is not None:
        # A bare "Yes" is judged by its window's texts: those need the whole tree.
        elements = _elements(ctx, draft, frame) if affirmative(element.name) else None
        draft.known = _known_element(element, elements or None)
        return element.name
    x1, y1, x2, y2 = box
    area = clip_region((x1 - LABEL_MARGIN, y1 - LABEL_MARGIN, x2 + LABEL_MARGIN,
                        y2 + LABEL_MARGIN), frame.width, frame.height)
    t = time.perf_counter()
    try:
        lines = ctx.reader.read(frame.rgb, area)
    finally:
        lap(draft, "ocr", t)
    draft.known = KnownText(tuple(lines), area)
    return " ".join(line.text for line in sorted(lines, key=lambda line: (line.box[1],
                                                                            line.box[0])))


def _label_changed(ctx: StepContext, draft: Draft, frame: Frame, box: PixelBox, *,
                   text: str | None, grounded_on: str) -> str | None:
    """Why a cache hit's label is not what the entry was grounded on, or None when it is.

    A text step needs its own text under the found crop; a model step needs the text that was
    read there when it was grounded (an entry grounded on no text is trusted on its pixels).
    """
    now = _label_on(ctx, draft, frame, box)
    want = text if text is not None else grounded_on
    if not want:
        return None
    lines = [TextLine(now, box, 1.0)] if now else []
    try:
        find_text(lines, want)
    except TextLookupError:
        # OCR of a small crop may read neighbouring buttons as one line ("Quit Save Load"):
        # the label still holds when its words stand whole in what was read.
        if _holds_words(now, want):
            return None
        return (f"the cached target's label reads {now!r}, not {want!r}" if now
                else f"no label is read on the cached target, where {want!r} was")
    return None


def _holds_words(read: str, want: str) -> bool:
    """Whether the words of ``want`` appear, whole and in order, among the words of ``read``."""
    words, target = read.casefold().split(), want.casefold().split()
    return bool(target) and any(words[i:i + len(target)] == target
                                for i in range(len(words) - len(target) + 1))


def click(spec: ClickSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft) if spec.at is not None else settled_frame(ctx, draft)
    # Kept before grounding: a target that is not found is the commonest failure, and its
    # screenshot (with the closest texts outlined in the report) is what explains it.
    keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    region = clip_to_frame(spec.region, frame)
    if spec.at is not None:
        problem = off_screen(spec.at, (frame.width, frame.height))
        if problem is not None:
            raise ActionRefused(problem)
        x, y = spec.at
        box = (x, y, x + 1, y + 1)
        draft.source, draft.message = Source.COORDS, f"at ({x}, {y})"
    else:
        text = ctx.text(spec.text) if spec.text is not None else None
        name = ctx.text(spec.name) if spec.name is not None else None
        target = ctx.shown(spec.target) if spec.target is not None else None
        key_text = f"text:{spec.text}" if spec.text is not None else \
            f"name:{spec.name}/{spec.role}" if spec.name is not None else f"target:{spec.target}"
        box = _ground(ctx, draft, frame, text=text, target=target, region=region,
                      key_text=f"{key_text}@{spec.region}", name=name, role=spec.role)
    draft.box, draft.point = box, center(box)
    act(ctx, draft, Click(action="click", box=point_box(box, frame), button=spec.button,
                           clicks=spec.clicks), frame)


TYPE_CHUNK = 100  # characters between checks of the deadline while typing
# What one character costs besides its interval: measured on Xvfb (pyautogui over XTEST, about
# 1-3 ms a character; xdotool about the same); rounded up so the estimate errs long.
CHAR_COST_S = 0.004


def type_text(spec: TypeSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    """Type the whole text, or fail before the first character, or say how much was typed.

    Everything that can be known before typing is checked first: that every character can be
    typed, that the typing fits in the time the task has left, and that a window has the focus.
    """
    typed = ctx.text(spec.text)
    interval_ms = spec.interval_ms if spec.interval_ms is not None else \
        ctx.task.typing.interval_ms
    missing = untypeable(ctx.device, typed)
    if missing:
        raise ActionRefused(f"cannot type {missing!r} with this keyboard; nothing was typed")
    needs = len(typed) * (interval_ms / 1000 + CHAR_COST_S)
    if needs > ctx.left():
        raise OutOfTime(f"typing {len(typed)} characters {interval_ms} ms apart takes about "
                        f"{needs:.1f}s and the task has {ctx.left():.1f}s left (budget "
                        f"timeout_s); nothing was typed")
    require_focus(ctx)
    frame = grab(ctx, draft)
    for start in range(0, len(typed), TYPE_CHUNK):
        if start and ctx.left() <= 0:
            raise OutOfTime(f"the task's time ran out after typing {start} of {len(typed)} "
                            "characters")
        last = start + TYPE_CHUNK >= len(typed)
        try:
            act(ctx, draft, Type(action="type", text=typed[start:start + TYPE_CHUNK]), frame,
                settle=last, type_interval=interval_ms / 1000)
        except StepFailed as exc:
            if not start:
                raise
            raise type(exc)(f"after typing {start} of {len(typed)} characters: {exc}") from None
    draft.message = f"typed {plural(len(typed), 'character')}"
    after = grab(ctx, draft)
    hide = ctx.record.redaction
    if hide.holds(typed):
        # Where the secret now shows stays masked in every later image of the run, even where
        # OCR would no longer read it (half covered, scrolled, a different font size).
        shown = hide.find(after.rgb)
        for box in shown:
            hide.remember(box)
        draft.message += (f"; the secret shows in {len(shown)} place(s), masked in every image "
                          "kept" if shown else "; the secret does not show on the screen")
    keep(ctx, draft, after, f"step-{step.position + 1:03d}")


def require_focus(ctx: StepContext) -> None:
    """Fail a keyboard step when its keys would go nowhere (no window has the focus).

    Without a window manager the X server's focus follows the pointer; with the pointer over
    the bare desktop, typed keys are lost while the step would report them typed.
    """
    if ctx.windows is None:
        return
    try:
        focused = ctx.windows.focused()
    except WindowProbeError as exc:
        raise ActionRefused(f"cannot tell which window has the keyboard focus: {exc}") from None
    if focused is None:
        raise ActionRefused("no window has the keyboard focus, so the keys would go nowhere; "
                            "launch the program with wait_for: {window: ...} (which rests the "
                            "pointer on it) or click into it first")


def key(chord: str, step: Step, ctx: StepContext, draft: Draft) -> None:
    require_focus(ctx)
    frame = grab(ctx, draft)
    act(ctx, draft, Key(action="key", keys=chord), frame)
    draft.message = f"pressed {chord}"
    keep(ctx, draft, grab(ctx, draft), f"step-{step.position + 1:03d}")


def scroll(spec: ScrollSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = settled_frame(ctx, draft) if spec.text is not None else grab(ctx, draft)
    keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    if spec.text is not None:
        box = _ground(ctx, draft, frame, text=ctx.text(spec.text), target=None,
                      region=clip_to_frame(spec.region, frame),
                      key_text=f"text:{spec.text}@{spec.region}")
    elif spec.at is not None:
        problem = off_screen(spec.at, (frame.width, frame.height))
        if problem is not None:
            raise ActionRefused(problem)
        box = (spec.at[0], spec.at[1], spec.at[0] + 1, spec.at[1] + 1)
        draft.source = Source.COORDS
    else:
        cx, cy = frame.width // 2, frame.height // 2
        box = (cx, cy, cx + 1, cy + 1)
        draft.source = Source.COORDS
    draft.box, draft.point = box, center(box)
    act(ctx, draft, Scroll(action="scroll", box=point_box(box, frame),
                            direction=spec.direction, amount=spec.amount), frame)
    draft.message = (draft.message + "; " if draft.message else "") + \
        f"scrolled {spec.direction} {spec.amount}"


def wait(seconds: float, step: Step, ctx: StepContext, draft: Draft) -> None:
    """Sleep, never past the task's deadline (a wait that would is cut short and fails)."""
    allowed = ctx.bounded(seconds)
    ctx.clock.sleep(allowed)
    if allowed < seconds:
        raise OutOfTime(f"waited {allowed:.1f}s of {seconds:g}s: the task's time budget "
                        "(timeout_s) ran out")
    draft.message = f"waited {seconds:g}s"
