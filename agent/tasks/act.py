"""Steps that act: click, type, key, scroll and wait, and the grounding of their targets."""

from __future__ import annotations

import time

from deskpilot.actions.types import MAX_TYPE_CHARS, Click, Key, Scroll, Type
from deskpilot.agent.tasks.cache import CacheMode, Hit, Stale, cache_key, replay
from deskpilot.agent.tasks.kit import (
    Draft,
    StepContext,
    TargetMissing,
    act,
    center,
    clip_to_frame,
    grab,
    keep,
    lap,
    point_box,
    read_text,
)
from deskpilot.agent.tasks.results import Source
from deskpilot.agent.tasks.spec import ClickSpec, ScrollSpec, Step
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import PixelBox, Region
from deskpilot.grounding.ocr import TextLine, clip_region
from deskpilot.grounding.preprocess import prepare
from deskpilot.grounding.template import FlatSnippet, cut
from deskpilot.grounding.textmatch import TextLookupError, find_text
from deskpilot.models.grounder import Grounder


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
            target: str | None, region: PixelBox | None, key_text: str) -> PixelBox:
    """A target's box: a verified cache entry, else fresh OCR or model grounding (then cached)."""
    key = cache_key(ctx.task.name, key_text, (frame.width, frame.height))
    note = ""
    if ctx.cache.mode is not CacheMode.OFF:
        t = time.perf_counter()
        outcome = replay(ctx.cache, key, frame.rgb)
        lap(draft, "cache", t)
        if isinstance(outcome, Hit):
            located = outcome.located
            wrong = _label_changed(ctx, draft, frame, located.box, text=text,
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
    if text is not None:
        box, grounded_on = _read_text(ctx, draft, frame, text, region)
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


LABEL_MARGIN = 4  # pixels read around a target's box when its label is read again


def _label_on(ctx: StepContext, draft: Draft, frame: Frame, box: PixelBox) -> str:
    """The text OCR reads on a target's box, in reading order ("" when there is none)."""
    x1, y1, x2, y2 = box
    t = time.perf_counter()
    try:
        lines = ctx.reader.read(frame.rgb, clip_region(
            (x1 - LABEL_MARGIN, y1 - LABEL_MARGIN, x2 + LABEL_MARGIN, y2 + LABEL_MARGIN),
            frame.width, frame.height))
    finally:
        lap(draft, "ocr", t)
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
        return (f"the cached target's label reads {now!r}, not {want!r}" if now
                else f"no label is read on the cached target, where {want!r} was")
    return None


def click(spec: ClickSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft)
    region = clip_to_frame(spec.region, frame)
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
    draft.box, draft.point = box, center(box)
    keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    act(ctx, draft, Click(action="click", box=point_box(box, frame), button=spec.button,
                           clicks=spec.clicks), frame)


def type_text(text: str, step: Step, ctx: StepContext, draft: Draft) -> None:
    typed = ctx.text(text)
    frame = grab(ctx, draft)
    for start in range(0, len(typed), MAX_TYPE_CHARS):
        act(ctx, draft, Type(action="type", text=typed[start:start + MAX_TYPE_CHARS]), frame)
    draft.message = f"typed {len(typed)} characters"
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


def key(chord: str, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft)
    act(ctx, draft, Key(action="key", keys=chord), frame)
    draft.message = f"pressed {chord}"
    keep(ctx, draft, grab(ctx, draft), f"step-{step.position + 1:03d}")


def scroll(spec: ScrollSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft)
    if spec.text is not None:
        box = _ground(ctx, draft, frame, text=ctx.text(spec.text), target=None,
                      region=clip_to_frame(spec.region, frame),
                      key_text=f"text:{spec.text}@{spec.region}")
    elif spec.at is not None:
        box = (spec.at[0], spec.at[1], spec.at[0] + 1, spec.at[1] + 1)
        draft.source = Source.COORDS
    else:
        cx, cy = frame.width // 2, frame.height // 2
        box = (cx, cy, cx + 1, cy + 1)
        draft.source = Source.COORDS
    draft.box, draft.point = box, center(box)
    keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    act(ctx, draft, Scroll(action="scroll", box=point_box(box, frame),
                            direction=spec.direction, amount=spec.amount), frame)
    draft.message = (draft.message + "; " if draft.message else "") + \
        f"scrolled {spec.direction} {spec.amount}"


def wait(seconds: float, step: Step, ctx: StepContext, draft: Draft) -> None:
    ctx.clock.sleep(seconds)
    draft.message = f"waited {seconds:g}s"
