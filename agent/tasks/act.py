"""Steps that act: click, type, key, scroll and wait, and the grounding of their targets."""

from __future__ import annotations

import time

from deskpilot.actions.text import plural
from deskpilot.actions.types import MAX_TYPE_CHARS, Click, Key, Scroll, Type
from deskpilot.agent.tasks.cache import CacheMode, Hit, Stale, cache_key, replay
from deskpilot.agent.tasks.kit import (
    Draft,
    StepContext,
    StepFailed,
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
from deskpilot.grounding.preprocess import prepare
from deskpilot.grounding.template import FlatSnippet, cut
from deskpilot.grounding.textmatch import TextLookupError
from deskpilot.models import asks


def _read_text(ctx: StepContext, draft: Draft, frame: Frame, query: str,
               region: PixelBox | None) -> PixelBox:
    """Find ``query`` by OCR; ambiguity and absence fail the step with the candidates."""
    try:
        match = read_text(ctx, draft, frame, query, region)
    except TextLookupError as exc:
        raise StepFailed(str(exc)) from None
    draft.source = Source.OCR
    draft.message = f"found {match.text!r} ({match.how}, score {match.score:.2f})"
    return match.box


def _locate(ctx: StepContext, draft: Draft, frame: Frame, target: str,
            region: PixelBox | None) -> PixelBox:
    """Ask the model where the target is (direct mode); the answer maps back to pixels."""
    settings = ctx.model.settings
    area = None if region is None else Region(region[0], region[1], region[2] - region[0],
                                              region[3] - region[1])
    t = time.perf_counter()
    image = prepare(frame, max_patches=settings.max_patches, region=area)
    reply = ctx.model.ask(asks.locate_request(target, image, temperature=settings.temperature))
    lap(draft, "model", t)
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


def click(spec: ClickSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft)
    # Kept before grounding: a target that is not found is the commonest failure, and its
    # screenshot (with the closest texts outlined in the report) is what explains it.
    keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
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
    act(ctx, draft, Click(action="click", box=point_box(box, frame), button=spec.button,
                           clicks=spec.clicks), frame)


def type_text(text: str, step: Step, ctx: StepContext, draft: Draft) -> None:
    typed = ctx.text(text)
    frame = grab(ctx, draft)
    for start in range(0, len(typed), MAX_TYPE_CHARS):
        act(ctx, draft, Type(action="type", text=typed[start:start + MAX_TYPE_CHARS]), frame)
    draft.message = f"typed {plural(len(typed), 'character')}"
    keep(ctx, draft, grab(ctx, draft), f"step-{step.position + 1:03d}")


def key(chord: str, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft)
    act(ctx, draft, Key(action="key", keys=chord), frame)
    draft.message = f"pressed {chord}"
    keep(ctx, draft, grab(ctx, draft), f"step-{step.position + 1:03d}")


def scroll(spec: ScrollSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft)
    keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
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
    act(ctx, draft, Scroll(action="scroll", box=point_box(box, frame),
                            direction=spec.direction, amount=spec.amount), frame)
    draft.message = (draft.message + "; " if draft.message else "") + \
        f"scrolled {spec.direction} {spec.amount}"


def wait(seconds: float, step: Step, ctx: StepContext, draft: Draft) -> None:
    ctx.clock.sleep(seconds)
    draft.message = f"waited {seconds:g}s"
