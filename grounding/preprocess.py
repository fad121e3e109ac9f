"""Turn a screenshot (or a crop of it) into the image the vision model is given.

The size is chosen so that llama.cpp's own preprocessing leaves the image alone. For Phi-4's
projector mtmd computes a target size with ``calc_size_preserved_ratio`` (sides aligned to the
16-pixel patch, at least ``image_min_pixels`` and at most ``image_max_pixels``) and, when that
differs from the input, resizes with *letterboxing*: the content is scaled by the smaller ratio
and centred on black padding. Padding would shift every normalized answer, so we resize
ourselves to a size that mtmd's computation maps to itself: aligned sides and a patch count
inside [256, 3600]. mtmd then copies the pixels unchanged and the answers map back exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import Region, View

log = logging.getLogger(__name__)

DEFAULT_PATCH = 16
DEFAULT_MAX_PATCHES = 3600
# The model's own floor (min_num_patches); mtmd enlarges smaller images, with letterboxing.
DEFAULT_MIN_PATCHES = 256


def fit_to_patches(width: int, height: int, *, max_patches: int = DEFAULT_MAX_PATCHES,
                   patch: int = DEFAULT_PATCH, min_patches: int = 0) -> tuple[int, int]:
    """The size to resize a ``width`` x ``height`` image to for a patch budget.

    Both sides are multiples of ``patch`` (at least one patch), the aspect ratio is kept as
    closely as the grid allows, and ``(w / patch) * (h / patch) <= max_patches`` always holds.
    An image already within budget keeps its size, rounded to the nearest multiple of ``patch``.
    With ``min_patches`` a smaller image is enlarged to at least that many patches.

    This is llama.cpp's ``calc_size_preserved_ratio``; where its arithmetic lands outside
    ``[min_patches, max_patches]`` (a one-patch short side that alone breaks the budget, or
    flooring below a floor that is close to the budget) the grid inside that window with the
    closest shape is taken instead, so llama.cpp never resizes (and pads) our output again.
    """
    for name, value in (("width", width), ("height", height), ("patch", patch),
                        ("max_patches", max_patches)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if not 0 <= min_patches <= max_patches:
        raise ValueError(f"min_patches must be between 0 and max_patches ({max_patches}), "
                         f"got {min_patches}")
    cols = max(1, _round_half_up(width / patch))
    rows = max(1, _round_half_up(height / patch))
    if cols * rows > max_patches:
        # Shrink both sides by one factor so the area fits, then floor to the grid.
        beta = math.sqrt(width * height / (max_patches * patch * patch))
        cols = max(1, math.floor(width / beta / patch))
        rows = max(1, math.floor(height / beta / patch))
    elif cols * rows < min_patches:
        beta = math.sqrt(min_patches * patch * patch / (width * height))
        cols = math.ceil(width * beta / patch)
        rows = math.ceil(height * beta / patch)
    if not min_patches <= cols * rows <= max_patches:
        cols, rows = _closest_grid(width / height, min_patches, max_patches)
    return cols * patch, rows * patch


def _round_half_up(x: float) -> int:
    # std::round rounds halves away from zero; Python's round() goes to even (62.5 -> 62).
    return math.floor(x + 0.5)


def _closest_grid(aspect: float, lo: int, hi: int) -> tuple[int, int]:
    """The grid of ``lo`` to ``hi`` patches whose shape is closest to ``aspect`` (then largest)."""
    # Walk the short side: it is at most sqrt(hi), and a grid oriented like the image always
    # beats its transpose. One patch of short side by ``lo``..``hi`` always fits.
    ratio = max(aspect, 1 / aspect)
    candidates = []
    for short in range(1, math.isqrt(hi) + 1):
        fewest, most = max(1, -(-lo // short)), hi // short
        if fewest <= most:
            long = min(max(round(short * ratio), fewest), most)
            candidates.append((abs(math.log(long / short / ratio)), -long * short, long, short))
    _, _, long, short = min(candidates)
    return (long, short) if aspect >= 1 else (short, long)


@dataclass(frozen=True, slots=True, eq=False)
class ModelImage:
    """The pixels handed to the model and the view that maps its normalized answers back."""

    rgb: np.ndarray
    view: View
    patch: int = DEFAULT_PATCH

    def __post_init__(self) -> None:
        rgb, view = self.rgb, self.view
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
                or rgb.shape[2] != 3 or not rgb.flags.c_contiguous:
            raise ValueError("model image pixels must be a C-contiguous H x W x 3 uint8 array")
        if (rgb.shape[1], rgb.shape[0]) != (view.image_width, view.image_height):
            raise ValueError(f"model image is {rgb.shape[1]}x{rgb.shape[0]} but its view says "
                             f"{view.image_width}x{view.image_height}")
        if rgb.shape[1] % self.patch or rgb.shape[0] % self.patch:
            raise ValueError(f"model image sides must be multiples of {self.patch}, "
                             f"got {rgb.shape[1]}x{rgb.shape[0]}")

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.view.image_width

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.view.image_height

    @property
    def n_patches(self) -> int:
        """Vision patches (and image tokens: one per patch) the model spends on this image."""
        return (self.width // self.patch) * (self.height // self.patch)

    def tobytes(self) -> bytes:
        """Packed RGB bytes, row by row (the layout of mtmd_bitmap_init)."""
        return self.rgb.tobytes()


def prepare(frame: Frame, *, max_patches: int = DEFAULT_MAX_PATCHES,
            patch: int = DEFAULT_PATCH, region: Region | None = None,
            min_patches: int = DEFAULT_MIN_PATCHES) -> ModelImage:
    """Crop ``region`` (image pixels; default the whole frame) and resize it for the model.

    The size comes from :func:`fit_to_patches`; the returned view maps the model's normalized
    answers back to screen points with :func:`grounding.geometry.norm_to_screen`.
    """
    if region is None:
        region = Region(0, 0, frame.width, frame.height)
    # A budget below the floor wins (mtmd will then enlarge and pad the image itself).
    width, height = fit_to_patches(region.width, region.height, max_patches=max_patches,
                                   patch=patch, min_patches=min(min_patches, max_patches))
    # View checks that the region lies inside the frame (frames match their monitor's size).
    view = View(frame.screen, region, width, height)
    crop = frame.rgb[region.y:region.y + region.height, region.x:region.x + region.width]
    if (width, height) == (region.width, region.height):
        rgb = np.ascontiguousarray(crop)
    else:
        # Area averaging: the right filter for shrinking (no aliasing of thin text strokes),
        # and OpenCV's is 3-4x faster than Pillow's bilinear (1080p to 720p: 10 ms vs 30 ms).
        rgb = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    log.debug("prepared %dx%d of %s as %dx%d", region.width, region.height, frame.screen,
              width, height)
    return ModelImage(rgb, view, patch)


__all__ = ["DEFAULT_MAX_PATCHES", "DEFAULT_MIN_PATCHES", "DEFAULT_PATCH", "ModelImage",
           "fit_to_patches", "prepare"]
