"""The loop's zoom step: locate a small pointer target again on a full-resolution crop.

The first answer is always a valid action; zooming only ever replaces its ``box`` with a finer
one. An unusable second answer keeps the first box (and says why in the log): zooming never
fails a step. A broken runtime still raises :class:`~models.runtime.RuntimeFailure`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import Click, Drag, Move, Scroll
from deskpilot.actions.validate import validate
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import View, box_center
from deskpilot.grounding.preprocess import prepare
from deskpilot.grounding.zoom import plan_zoom, refine_box
from deskpilot.models.asks import AskError
from deskpilot.models.grounder import Grounder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Zoomed:
    """One step's action after zooming, and what the zoom call cost."""

    resolved: Resolved
    image_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    note: str = "not zoomed"


def zoom_in(resolved: Resolved, frame: Frame, view: View, grounder: Grounder, *,
            zoom_patches: int, now: Callable[[], float]) -> Zoomed:
    """Refine the box of a pointer action found in ``view`` of ``frame``, when it is small.

    The crop is located with ``grounder``'s call (the model's own sentence, or the joint
    click). ``now`` is the loop's clock; the zoom call's seconds go to ``timings["zoom_s"]``
    and its own runtime timings under ``zoom_`` names.
    """
    action = resolved.action
    if not isinstance(action, Click | Move | Drag | Scroll):
        return Zoomed(resolved)
    if not action.target.strip():
        return Zoomed(resolved, note="no target description to look for")
    region = plan_zoom(view, action.box, zoom_patches=zoom_patches)
    if region is None:
        return Zoomed(resolved, note="target large enough in the first view")
    started = now()
    crop = prepare(frame, max_patches=zoom_patches, region=region)
    found = grounder.locate(action.target, crop)
    reply = found.reply
    timings = {"zoom_s": now() - started, **{f"zoom_{k}": v for k, v in reply.timings.items()}}
    try:
        if found.box is None:
            raise AskError(found.note)
        box = found.box
        cx, cy = box_center(box)
        if not (0.0 < cx < 1.0 and 0.0 < cy < 1.0):
            raise AskError(f"its centre ({cx:.3f}, {cy:.3f}) is on the crop's edge or outside")
        refined = type(action).model_validate(
            {**action.model_dump(), "box": refine_box(view, crop.view, box)})
        better = validate(refined, view)
    except ValueError as exc:  # AskError, ActionRejected, pydantic's ValidationError
        log.info("zoom on %r kept the first box: %s", action.target, exc)
        return Zoomed(resolved, reply.image_tokens, timings, f"kept the first box: {exc}")
    log.info("zoom on %r moved %s to %s", action.target, resolved.points[0], better.points[0])
    return Zoomed(better, reply.image_tokens, timings, "refined")


__all__ = ["Zoomed", "zoom_in"]
