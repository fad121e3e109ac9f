"""Zooming in on a small target: which targets, which crop, and how its answer maps back.

The agent shows the model the whole screen within a patch budget (one image token per 16x16
patch), which shrinks a large screen several times over. When a pointer target is small there,
a second look at a full-resolution crop around it locates it more exactly. Everything here is
pure: the crop is a :class:`~grounding.geometry.Region` of the screenshot, its view maps the
model's answer to screen points, and :func:`refine_box` re-expresses that answer in the first
view's normalized coordinates so the usual validation maps it to the very same screen point.
"""

from __future__ import annotations

import math

from deskpilot.grounding.geometry import (
    Point,
    Region,
    ScreenGeometry,
    View,
    box_to_screen,
    screen_to_norm,
)
from deskpilot.grounding.preprocess import DEFAULT_MIN_PATCHES, DEFAULT_PATCH, fit_to_patches

NormBox = tuple[float, float, float, float]
"""A normalized ``(x1, y1, x2, y2)`` box in the image the model saw."""

# A box with a side under this many screenshot pixels is small on any screen: a patch or two.
SMALL_BOX_PX = 48
# A first view that shrank the screenshot by more than this is too coarse to trust for a target
# of any size that fits the crop.
MAX_DOWNSCALE = 1.5
# A box wider or taller than this share of the crop would not fit it with context: no zoom.
MAX_CROP_SHARE = 0.5
# The crop must show the screen at least this many times finer than the first view, or the
# second call would see nothing new.
MIN_MAGNIFICATION = 1.2


def wants_zoom(box_w: float, box_h: float, *, first_downscale: float, crop_w: int, crop_h: int,
               crop_downscale: float) -> bool:
    """The zoom rule, on sizes in screenshot pixels.

    ``box_w`` x ``box_h`` is the predicted box; ``first_downscale`` and ``crop_downscale`` are
    screenshot pixels per image pixel in the first view and in the crop (1.0: native). Zoom when
    the crop magnifies (``MIN_MAGNIFICATION``), the box fits the crop with context
    (``MAX_CROP_SHARE``), and either the box is small (``SMALL_BOX_PX``) or the first view was
    shrunk a lot (``MAX_DOWNSCALE``).
    """
    if first_downscale < MIN_MAGNIFICATION * crop_downscale:
        return False
    if box_w > MAX_CROP_SHARE * crop_w or box_h > MAX_CROP_SHARE * crop_h:
        return False
    return min(box_w, box_h) < SMALL_BOX_PX or first_downscale > MAX_DOWNSCALE


def zoom_region(view: View, box: NormBox, *, zoom_patches: int,
                patch: int = DEFAULT_PATCH) -> Region:
    """The crop to show around ``box``: centred on it, inside ``view``'s region.

    The crop is the largest square of whole patches within ``zoom_patches`` (1024: 512x512), so
    :func:`grounding.preprocess.prepare` shows it at native resolution without resizing. Near an
    edge the crop slides inward rather than shrinking; only a region smaller than the crop
    clips it, to whole patches where the region allows.
    """
    if zoom_patches < 1:
        raise ValueError(f"zoom_patches must be at least 1, got {zoom_patches}")
    side = math.isqrt(zoom_patches) * patch
    r = view.region
    cx = (box[0] + box[2]) / 2
    cy = (box[1] + box[3]) / 2
    left, width = _span(r.x, r.width, cx, side, patch)
    top, height = _span(r.y, r.height, cy, side, patch)
    return Region(left, top, width, height)


def _span(start: int, length: int, centre: float, side: int, patch: int) -> tuple[int, int]:
    """One axis of the crop: ``side`` pixels centred on ``centre`` (normalized), kept inside."""
    size = min(side, length)
    if size > patch:
        size -= size % patch
    wanted = math.floor(start + min(max(centre, 0.0), 1.0) * length - size / 2 + 0.5)
    return min(max(wanted, start), start + length - size), size


def plan_zoom(view: View, box: NormBox, *, zoom_patches: int,
              patch: int = DEFAULT_PATCH) -> Region | None:
    """The crop to zoom into for ``box`` in ``view``, or None when :func:`wants_zoom` says no."""
    crop = zoom_region(view, box, zoom_patches=zoom_patches, patch=patch)
    crop_w, crop_h = fit_to_patches(crop.width, crop.height, max_patches=zoom_patches,
                                    patch=patch, min_patches=min(DEFAULT_MIN_PATCHES, zoom_patches))
    r = view.region
    wanted = wants_zoom(
        abs(box[2] - box[0]) * r.width, abs(box[3] - box[1]) * r.height,
        first_downscale=max(r.width / view.image_width, r.height / view.image_height),
        crop_w=crop.width, crop_h=crop.height,
        crop_downscale=max(crop.width / crop_w, crop.height / crop_h))
    return crop if wanted else None


def refine_box(first_view: View, crop_view: View, crop_box: NormBox) -> NormBox:
    """Re-express ``crop_box`` (normalized in ``crop_view``) in ``first_view``'s coordinates.

    The result's centre lands on exactly the screen point that ``crop_box``'s centre maps to
    through ``crop_view``: it is that point's pixel centre (which rounding cannot move off the
    point), clamped to the first view. The box keeps the crop answer's size where the edges allow.
    """
    if crop_view.screen != first_view.screen:
        raise ValueError("the crop and the first view show different monitors")
    c, r = crop_view.region, first_view.region
    if not (r.x <= c.x and c.x + c.width <= r.x + r.width
            and r.y <= c.y and c.y + c.height <= r.y + r.height):
        raise ValueError(f"crop {c} lies outside the first view's region {r}")
    target: Point = box_to_screen(crop_box, crop_view)
    nx, ny = (min(max(v, 0.0), 1.0) for v in screen_to_norm(target, first_view))
    half_w = min(abs(crop_box[2] - crop_box[0]) * c.width / r.width / 2, nx, 1.0 - nx)
    half_h = min(abs(crop_box[3] - crop_box[1]) * c.height / r.height / 2, ny, 1.0 - ny)
    x1, y1, x2, y2 = nx - half_w, ny - half_h, nx + half_w, ny + half_h
    return (max(x1, 0.0), max(y1, 0.0), min(x2, 1.0), min(y2, 1.0))


def tokens_for(screen_w: int, screen_h: int, max_patches: int, *, zoom_patches: int = 0,
               patch: int = DEFAULT_PATCH) -> int:
    """Image tokens one step spends on a ``screen_w`` x ``screen_h`` screenshot.

    The full view at ``max_patches``; with ``zoom_patches`` also the crop of a zoomed step.
    """
    def tokens(width: int, height: int, budget: int) -> int:
        w, h = fit_to_patches(width, height, max_patches=budget, patch=patch,
                              min_patches=min(DEFAULT_MIN_PATCHES, budget))
        return (w // patch) * (h // patch)

    total = tokens(screen_w, screen_h, max_patches)
    if zoom_patches:
        screen = View.full(ScreenGeometry(0, 0, screen_w, screen_h), screen_w, screen_h)
        crop = zoom_region(screen, (0.5, 0.5, 0.5, 0.5), zoom_patches=zoom_patches, patch=patch)
        total += tokens(crop.width, crop.height, zoom_patches)
    return total


__all__ = ["MAX_CROP_SHARE", "MAX_DOWNSCALE", "MIN_MAGNIFICATION", "SMALL_BOX_PX", "NormBox",
           "plan_zoom", "refine_box", "tokens_for", "wants_zoom", "zoom_region"]
