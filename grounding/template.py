"""Verify a cached target on the current screen by template matching before it is clicked.

A grounded target (found by OCR or by the model) is stored as a :class:`Snippet`: a crop of the
screenshot around the target's box. On replay :func:`locate` finds that crop on the new
screenshot: in place, moved (relocated with the exact offset), or not at all — it raises
:class:`NotOnScreen` when nothing matches well enough and :class:`AmbiguousMatch` when several
places do, so a cached click never lands on a stale or guessed spot.

Matching uses OpenCV's ``TM_CCOEFF_NORMED`` (zero-mean normalized cross-correlation) on
grayscale. Subtracting the mean and dividing by the norm makes the score blind to uniform
brightness and contrast changes (an inactive window dimmed by the compositor, a hover tint) and
keeps it in [-1, 1] whatever the crop, so one threshold means the same for every target.
Grayscale is a third of the work and keeps what identifies a UI element (text, edges, icon
shapes); the price is that two elements differing only in hue at equal luminance look alike.

cv2's float32 map only proposes places; each one is then scored exactly (float64) on the whole
crop *and* on the target's own box, and the lower of the two decides. A small target in busy
surroundings would otherwise still "match" after it disappeared (the context alone scores
~0.97 when a faint 8x8 icon is removed from a 60x60 crop).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from deskpilot.grounding.geometry import PixelBox

log = logging.getLogger(__name__)


# A crop whose grayscale standard deviation is below this is too plain to verify: a blank
# patch correlates with any blank patch of the screen.
MIN_SNIPPET_STD = 2.0
# A screen window this flat cannot be the (textured) crop; cv2 divides by ~0 there and its
# score is noise, so such windows score 0 when a candidate is checked exactly.
_MIN_WINDOW_STD = 0.5
# A plain target box (no texture of its own) must keep its brightness within this many gray
# levels: with nothing to correlate, brightness is all there is to check.
_FLAT_TARGET_DELTA = 16
# How far (pixels) around the stored position the in-place check looks, so a 1-2 px jitter
# is measured exactly instead of being accepted as "in place" at a slightly wrong spot.
_LOCAL_RADIUS = 3
# Candidates above the threshold that fail the exact check (the target itself differs, or
# flat-window noise) before the global search gives up: this only bounds a pathological case.
_MAX_REJECTS = 256


class FlatSnippet(ValueError):
    """The crop has too little texture to be verified by template matching."""


class NotOnScreen(LookupError):
    """The snippet matches nowhere on the screen well enough."""

    def __init__(self, message: str, *, best_score: float | None,
                 best_box: PixelBox | None) -> None:
        super().__init__(message)
        self.best_score = best_score
        self.best_box = best_box


class AmbiguousMatch(LookupError):
    """The snippet matches at several clearly different places, none of them the stored one."""

    def __init__(self, message: str, *, places: tuple[PixelBox, ...],
                 scores: tuple[float, ...]) -> None:
        super().__init__(message)
        self.places = places
        self.scores = scores


@dataclass(frozen=True, slots=True, eq=False)
class Snippet:
    """A crop of a screenshot around a target, and where the target and the crop were on it.

    ``box`` is the target on the screenshot the crop was cut from; ``origin`` is the crop's
    top-left corner on that screenshot, so the target inside the crop is ``box - origin``.
    """

    rgb: np.ndarray
    box: PixelBox
    origin: tuple[int, int]

    def __post_init__(self) -> None:
        _check_rgb(self.rgb, "snippet")
        h, w = self.rgb.shape[:2]
        x1, y1, x2, y2 = self.box
        ox, oy = self.origin
        if not (ox <= x1 < x2 <= ox + w and oy <= y1 < y2 <= oy + h):
            raise ValueError(f"target box {self.box} is not inside the {w}x{h} crop at "
                             f"{self.origin}")
        std = float(np.std(_gray(self.rgb)))
        if std < MIN_SNIPPET_STD:
            raise FlatSnippet(f"the {w}x{h} crop around {self.box} is too plain to verify "
                              f"(gray std {std:.2f} < {MIN_SNIPPET_STD})")

    @property
    def size(self) -> tuple[int, int]:
        """The crop's (width, height)."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


@dataclass(frozen=True, slots=True)
class Located:
    """Where a snippet's target is on the current screen.

    ``score`` is the lower of the crop's and the target box's own correlation there (at most 1).
    """

    box: PixelBox
    score: float
    offset: tuple[int, int]

    @property
    def moved(self) -> bool:
        """True when the target is not where it was stored."""
        return self.offset != (0, 0)


def cut(rgb: np.ndarray, box: PixelBox, *, pad: int = 24) -> Snippet:
    """Crop ``box`` plus ``pad`` pixels of context on each side (clipped to the image)."""
    _check_rgb(rgb, "screenshot")
    if pad < 0:
        raise ValueError(f"pad must not be negative, got {pad}")
    height, width = rgb.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(box[2]), width), min(int(box[3]), height)
    if x1 >= x2 or y1 >= y2:
        raise ValueError(f"box {box} has no pixels on the {width}x{height} screenshot")
    ox, oy = max(x1 - pad, 0), max(y1 - pad, 0)
    ex, ey = min(x2 + pad, width), min(y2 + pad, height)
    crop = np.array(rgb[oy:ey, ox:ex], dtype=np.uint8, order="C")  # a copy: the screen moves on
    crop.flags.writeable = False
    return Snippet(crop, (x1, y1, x2, y2), (ox, oy))


def locate(rgb: np.ndarray, snippet: Snippet, *, threshold: float = 0.9) -> Located:
    """Find the snippet's target on ``rgb``: at its stored place if it is there, else anywhere.

    The stored place wins when it scores ``threshold`` (within a few pixels, so a small jitter
    is measured), even if a copy of the element is elsewhere. Otherwise the whole screen is
    searched: :class:`NotOnScreen` when no place scores ``threshold``, :class:`AmbiguousMatch`
    when places more than half a crop apart both do, else the one place, relocated.
    """
    _check_rgb(rgb, "screenshot")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    screen = _gray(rgb)
    templ = _gray(snippet.rgb)
    th, tw = templ.shape
    sh, sw = screen.shape
    if th > sh or tw > sw:
        raise NotOnScreen(f"the {tw}x{th} snippet is larger than the {sw}x{sh} screen",
                          best_score=None, best_box=None)
    ox, oy = snippet.origin
    x1, y1, x2, y2 = snippet.box
    scorer = _Scorer(screen, templ, (x1 - ox, y1 - oy, x2 - ox, y2 - oy))

    found = _in_place(scorer, snippet.origin, threshold)
    if found is not None:
        (x, y), score = found
        return _located(snippet, x, y, score)

    search = _global_search(scorer, threshold)
    if search.gave_up:
        raise NotOnScreen(f"gave up after {_MAX_REJECTS} places whose surroundings match but "
                          "whose target does not", best_score=search.best_score,
                          best_box=None if search.best is None else _shift(snippet, *search.best))
    if not search.peaks:
        if search.best is None:
            raise NotOnScreen("no place on the screen has any texture like the snippet",
                              best_score=None, best_box=None)
        where = _shift(snippet, *search.best)
        detail = ""
        if search.best_crop_score - search.best_score > 0.05:
            detail = f" (its surroundings alone score {search.best_crop_score:.3f})"
        raise NotOnScreen(f"not on screen: best score {search.best_score:.3f} < {threshold:.3f} "
                          f"at {_fmt_box(where)}{detail}", best_score=search.best_score,
                          best_box=where)
    if len(search.peaks) > 1:
        places = tuple(_shift(snippet, x, y) for (x, y), _ in search.peaks)
        scores = tuple(s for _, s in search.peaks)
        listed = ", ".join(f"{_fmt_box(p)} {s:.3f}" for p, s in zip(places, scores, strict=True))
        raise AmbiguousMatch(f"{len(places)} places match above {threshold:.3f}: {listed}",
                             places=places, scores=scores)
    (x, y), score = search.peaks[0]
    return _located(snippet, x, y, score)


class _Scorer:
    """Exact scores of the snippet at given crop origins on one grayscale screen.

    The exact score is the lower of the whole crop's correlation and the target box's own: the
    context around a small target can match by itself after the target is gone, and clicking
    there is exactly the stale click this module exists to prevent.
    """

    def __init__(self, screen: np.ndarray, templ: np.ndarray, target: PixelBox) -> None:
        self.screen = screen
        self.templ = templ
        self.target = target
        self._crop = _Pattern(templ)
        tx1, ty1, tx2, ty2 = target
        self._target = _Pattern(templ[ty1:ty2, tx1:tx2])

    @property
    def max_x(self) -> int:
        """Largest crop origin x that keeps the crop on the screen."""
        return int(self.screen.shape[1] - self.templ.shape[1])

    @property
    def max_y(self) -> int:
        """Largest crop origin y that keeps the crop on the screen."""
        return int(self.screen.shape[0] - self.templ.shape[0])

    def match(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """cv2's score map for crop origins x0..x1, y0..y1 (inclusive), non-finite as -1."""
        th, tw = self.templ.shape
        area = self.screen[y0:y1 + th, x0:x1 + tw]
        scores = cv2.matchTemplate(area, self.templ, cv2.TM_CCOEFF_NORMED)
        # Flat screen regions make cv2 divide by ~0: inf/nan there mean "no match", not 1.
        return np.where(np.isfinite(scores), scores, np.float32(-1.0))

    def scores(self, x: int, y: int) -> tuple[float, float]:
        """The crop's and the target's own scores at one crop origin, in float64."""
        th, tw = self.templ.shape
        crop = self._crop.score(self.screen[y:y + th, x:x + tw])
        tx1, ty1, tx2, ty2 = self.target
        target = self._target.score(self.screen[y + ty1:y + ty2, x + tx1:x + tx2])
        return crop, target

    def exact(self, x: int, y: int) -> float:
        """The score that decides at one crop origin: the lower of the two."""
        return min(self.scores(x, y))


class _Pattern:
    """One grayscale pattern, ready to be compared with same-sized windows of the screen."""

    def __init__(self, pattern: np.ndarray) -> None:
        values = pattern.astype(np.float64)
        self.mean = float(values.mean())
        self.flat = float(values.std()) < MIN_SNIPPET_STD
        self._centred = values - self.mean
        self._norm = float(np.sqrt((self._centred * self._centred).sum()))

    def score(self, window: np.ndarray) -> float:
        """The correlation coefficient with ``window``; 0 for a flat window.

        A flat pattern (a plain target inside a textured crop) has no correlation to speak of:
        it scores 1 when the window is as plain and about as bright, else 0.
        """
        values = window.astype(np.float64)
        mean = float(values.mean())
        centred = values - mean
        norm = float(np.sqrt((centred * centred).sum()))
        if self.flat:
            same = norm < 2 * MIN_SNIPPET_STD * math.sqrt(values.size) \
                and abs(mean - self.mean) <= _FLAT_TARGET_DELTA
            return 1.0 if same else 0.0
        if norm < _MIN_WINDOW_STD * math.sqrt(values.size):
            return 0.0
        return float((centred * self._centred).sum() / (norm * self._norm))


def _in_place(scorer: _Scorer, origin: tuple[int, int],
              threshold: float) -> tuple[tuple[int, int], float] | None:
    """The best origin within a few pixels of the stored one, if it scores the threshold.

    A peak on the edge of the searched window (where the screen goes on) may be the slope of
    a peak further out, so it is left to the global search.
    """
    ox, oy = origin
    if not (0 <= ox <= scorer.max_x and 0 <= oy <= scorer.max_y):
        return None  # a different screen size, or the crop's place is now off the screen
    x0, y0 = max(ox - _LOCAL_RADIUS, 0), max(oy - _LOCAL_RADIUS, 0)
    x1, y1 = min(ox + _LOCAL_RADIUS, scorer.max_x), min(oy + _LOCAL_RADIUS, scorer.max_y)
    scores = scorer.match(x0, y0, x1, y1)
    iy, ix = np.unravel_index(int(np.argmax(scores)), scores.shape)
    x, y = x0 + int(ix), y0 + int(iy)
    open_edge = ((x == x0 and x0 > 0) or (x == x1 and x1 < scorer.max_x)
                 or (y == y0 and y0 > 0) or (y == y1 and y1 < scorer.max_y))
    if open_edge:
        return None
    score = scorer.exact(x, y)
    return ((x, y), score) if score >= threshold else None


@dataclass(slots=True)
class _Search:
    """What the global search found: peaks, and the best place seen when there is none."""

    peaks: list[tuple[tuple[int, int], float]] = field(default_factory=list)
    best: tuple[int, int] | None = None
    best_score: float = -1.0
    best_crop_score: float = -1.0
    gave_up: bool = False

    def saw(self, place: tuple[int, int], crop: float, target: float) -> None:
        """Remember a place that did not make the threshold, if it is the best so far."""
        if self.best is None or min(crop, target) > self.best_score:
            self.best, self.best_score, self.best_crop_score = place, min(crop, target), crop


def _global_search(scorer: _Scorer, threshold: float) -> _Search:
    """Peaks scoring the threshold, each more than half a crop from the others, best first."""
    scores = scorer.match(0, 0, scorer.max_x, scorer.max_y)
    th, tw = scorer.templ.shape
    # Two places this close are the same match seen slightly shifted, not two elements.
    rx, ry = tw // 2, th // 2
    search = _Search()
    rejects = 0
    while True:
        iy, ix = np.unravel_index(int(np.argmax(scores)), scores.shape)
        x, y = int(ix), int(iy)
        raw = float(scores[y, x])
        if raw == -1.0 and not search.peaks and search.best is None:
            return search  # nothing finite anywhere: no place to name
        crop, target = scorer.scores(x, y)
        if raw < threshold:
            search.saw((x, y), crop, target)
            return search
        if min(crop, target) >= threshold:
            search.peaks.append(((x, y), min(crop, target)))
            scores[max(y - ry, 0):y + ry + 1, max(x - rx, 0):x + rx + 1] = -1.0
            continue
        # The surroundings matched but the target did not, or cv2's float32 score was noise on
        # a near-flat window: drop this spot and its immediate neighbours (shifted by a pixel
        # or two they fail the same way), not the half-crop around it, where a real match
        # may still be.
        search.saw((x, y), crop, target)
        scores[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3] = -1.0
        rejects += 1
        if rejects >= _MAX_REJECTS:
            # Fail closed: a peak not yet examined could make the answer ambiguous.
            log.warning("template search gave up after %d near matches", rejects)
            search.gave_up = True
            return search


def _located(snippet: Snippet, x: int, y: int, score: float) -> Located:
    offset = (x - snippet.origin[0], y - snippet.origin[1])
    return Located(_shift(snippet, x, y), min(score, 1.0), offset)


def _shift(snippet: Snippet, x: int, y: int) -> PixelBox:
    """The target box when the crop's top-left corner is at (x, y)."""
    dx, dy = x - snippet.origin[0], y - snippet.origin[1]
    x1, y1, x2, y2 = snippet.box
    return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def _fmt_box(box: PixelBox) -> str:
    return f"({box[0]},{box[1]})-({box[2]},{box[3]})"


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _check_rgb(rgb: object, what: str) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{what} must be an H x W x 3 uint8 numpy array, got "
                         f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb))}")
