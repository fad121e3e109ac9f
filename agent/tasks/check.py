"""Steps that check: text on the screen (or gone), a screenshot against its baseline, a file."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from deskpilot.agent.tasks.kit import (
    POLL_S,
    Draft,
    RecordFailed,
    StepContext,
    StepFailed,
    clip_to_frame,
    grab,
    keep,
    lap,
    read_text,
)
from deskpilot.agent.tasks.results import Source
from deskpilot.agent.tasks.spec import FileSpec, ScreenshotSpec, Step, TextSpec
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.files import read_regular_file, reason
from deskpilot.grounding.geometry import PixelBox
from deskpilot.grounding.textmatch import AmbiguousText, TextLookupError
from deskpilot.grounding.visual import ImageError, compare, load_png, save_png


def _poll_text(spec: TextSpec, step: Step, ctx: StepContext, draft: Draft, *, want: bool,
               default_timeout: float) -> None:
    """Read the screen until the text is there (``want``) or gone, or the time is up."""
    query = ctx.text(spec.text)
    timeout = spec.timeout_s if "timeout_s" in spec.model_fields_set else default_timeout
    started = ctx.clock.now()
    deadline = min(started + timeout, ctx.deadline)
    while True:
        frame = grab(ctx, draft)
        region = clip_to_frame(spec.region, frame)
        box, reason = _find(ctx, draft, frame, query, region)
        if (box is not None) == want or ctx.clock.now() >= deadline:
            break
        ctx.clock.sleep(POLL_S)
    keep(ctx, draft, frame, f"step-{step.position + 1:03d}")
    # The report outlines the text found, or else the region that was searched.
    draft.box, draft.source = box if box is not None else region, Source.OCR
    shown = ctx.shown(spec.text)
    cut = " (cut short: the task's time budget ran out)" if deadline < started + timeout else ""
    if want and box is None:
        raise StepFailed(f"{reason} (waited {timeout:g}s){cut}")
    if not want and box is not None:
        raise StepFailed(f"text {shown!r} is on the screen at {box} (waited {timeout:g}s "
                         "for it to go)")
    if not want:
        # The closest texts explain a missing text that was wanted; when the text was meant to
        # be gone they are only noise.
        draft.candidates = ()
    draft.message = f"{shown!r} is on the screen" if want else f"{shown!r} is not on the screen"


def _find(ctx: StepContext, draft: Draft, frame: Frame, query: str,
          region: PixelBox | None) -> tuple[PixelBox | None, str]:
    """Where the text is (any one place when it shows several times), or why it is not."""
    try:
        return read_text(ctx, draft, frame, query, region).box, ""
    except AmbiguousText as exc:
        return exc.candidates[0].box, ""
    except TextLookupError as exc:
        return None, str(exc)


def wait_for(spec: TextSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    _poll_text(spec, step, ctx, draft, want=True, default_timeout=10.0)


def expect(spec: TextSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    _poll_text(spec, step, ctx, draft, want=True, default_timeout=3.0)


def expect_not(spec: TextSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    _poll_text(spec, step, ctx, draft, want=False, default_timeout=3.0)


def screenshot(spec: ScreenshotSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
    frame = grab(ctx, draft)
    keep(ctx, draft, frame, spec.name)
    # A baseline is an image kept beside the task file: secrets are masked in it too, and in
    # the screen it is compared with, so the two still agree.
    rgb, masked = ctx.record.redaction.image(frame.rgb)
    if masked:
        draft.message = f"{masked} secret area(s) masked; "
    if not spec.compare:
        draft.message = f"saved {draft.screenshot}"
        return
    baseline = ctx.baselines / f"{spec.name}.png"
    region = clip_to_frame(spec.region, frame)
    stored = baseline.exists() or baseline.is_symlink()
    if ctx.update_baselines or not stored:
        verb = "updated" if stored else "recorded (none was stored)"
        try:
            save_png(baseline, np.ascontiguousarray(rgb))  # atomic: never half a baseline
        except OSError as exc:
            raise RecordFailed(f"cannot write the baseline {baseline}: "
                               f"{exc.strerror or exc}") from None
        draft.message += f"baseline {verb}: {baseline}"
        return
    t = time.perf_counter()
    try:
        expected = load_png(baseline)
    except (ImageError, OSError) as exc:
        raise StepFailed(f"the baseline cannot be used: {exc}; replace it, or record it again "
                         "with --update-baselines") from None
    result = compare(expected, rgb, region=region,
                     pixel_threshold=spec.pixel_threshold, tolerance=spec.tolerance)
    lap(draft, "compare", t)
    # The report zooms on the change, or else on the region that was compared.
    draft.box = result.changed_box or region
    if result.diff is not None and not result.passed:
        draft.diff = ctx.record.save_image(f"{spec.name}-diff", result.diff)
    if not result.passed:
        # A copy in the run directory, so the report can set it beside what was seen.
        draft.baseline = ctx.record.save_image(f"{spec.name}-baseline", expected)
    draft.message = result.message
    if not result.passed:
        raise StepFailed(f"differs from {baseline}: {result.message}")


def expect_file(spec: FileSpec, step: Step, ctx: StepContext, draft: Draft) -> None:
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


MAX_EXPECTED_FILE_BYTES = 16 * 1024 * 1024  # what expect_file reads to look for its text


def _file_problem(path: Path, contains: str | None) -> str | None:
    try:
        data = read_regular_file(path, MAX_EXPECTED_FILE_BYTES).decode("utf-8", "replace")
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot read it ({reason(exc)})"
    if contains is not None and contains not in data:
        return f"does not contain the expected text ({len(data)} characters read)"
    return None
