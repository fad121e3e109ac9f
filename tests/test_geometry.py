"""Coordinate mapping tables: normalized answers to screen points and back, on all monitor kinds."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from deskpilot.grounding.geometry import (
    Point,
    Region,
    ScreenGeometry,
    View,
    box_center,
    box_to_screen,
    crop_view,
    norm_to_screen,
    screen_to_norm,
)

P1080 = ScreenGeometry(0, 0, 1920, 1080)
RETINA = ScreenGeometry(0, 0, 1440, 900, scale=2.0)              # 2880x1800 pixel screenshots
LEFT = ScreenGeometry(-1920, 0, 1920, 1080, index=2)              # secondary monitor, left
LEFT_RETINA = ScreenGeometry(-1440, -900, 1440, 900, scale=2.0, index=2)
FRACTIONAL = ScreenGeometry(0, 0, 1280, 720, scale=1.5)           # 150 % scaling: 1920x1080 px
WIDE = ScreenGeometry(0, 0, 10000, 10)
TALL = ScreenGeometry(0, 0, 10, 10000)


def full(screen: ScreenGeometry) -> View:
    # The image size is what the model saw; normalized answers do not depend on it.
    return View.full(screen, 1280, 720)


NORM_CASES = [
    # id, view, normalized point, expected screen point
    ("1080p-centre", full(P1080), (0.5, 0.5), Point(960, 540)),
    ("1080p-origin", full(P1080), (0.0, 0.0), Point(0, 0)),
    ("1080p-quarter", full(P1080), (0.25, 0.75), Point(480, 810)),
    ("1080p-one-clamps-to-last-pixel", full(P1080), (1.0, 1.0), Point(1919, 1079)),
    ("1080p-outside-clamps", full(P1080), (-0.2, 1.5), Point(0, 1079)),
    ("hidpi-centre", full(RETINA), (0.5, 0.5), Point(720, 450)),
    ("hidpi-point", full(RETINA), (0.1, 0.2), Point(144, 180)),
    ("hidpi-one-clamps", full(RETINA), (1.0, 1.0), Point(1439, 899)),
    ("negative-origin-centre", full(LEFT), (0.5, 0.5), Point(-960, 540)),
    ("negative-origin-corner", full(LEFT), (0.0, 0.0), Point(-1920, 0)),
    ("negative-origin-one", full(LEFT), (1.0, 1.0), Point(-1, 1079)),
    ("negative-origin-hidpi", full(LEFT_RETINA), (0.5, 0.5), Point(-720, -450)),
    ("fractional-scale", full(FRACTIONAL), (0.5, 0.5), Point(640, 360)),
    ("crop-centre", View(P1080, Region(800, 400, 320, 200), 320, 208), (0.5, 0.5),
     Point(960, 500)),
    ("crop-origin", View(P1080, Region(800, 400, 320, 200), 320, 208), (0.0, 0.0),
     Point(800, 400)),
    ("crop-one", View(P1080, Region(800, 400, 320, 200), 320, 208), (1.0, 1.0),
     Point(1119, 599)),
    ("crop-hidpi", View(RETINA, Region(1000, 600, 400, 300), 400, 304), (0.5, 0.5),
     Point(600, 375)),
    ("crop-hidpi-negative-origin", View(LEFT_RETINA, Region(1000, 600, 400, 300), 400, 304),
     (0.25, 0.5), Point(-1440 + 550, -900 + 375)),
    ("extreme-wide", full(WIDE), (0.5, 0.5), Point(5000, 5)),
    ("extreme-wide-end", full(WIDE), (1.0, 0.0), Point(9999, 0)),
    ("extreme-tall", full(TALL), (0.5, 0.5), Point(5, 5000)),
    ("extreme-tall-end", full(TALL), (0.0, 1.0), Point(0, 9999)),
]


@pytest.mark.parametrize(("view", "norm", "expected"), [c[1:] for c in NORM_CASES],
                         ids=[c[0] for c in NORM_CASES])
def test_norm_to_screen(view: View, norm: tuple[float, float], expected: Point) -> None:
    assert norm_to_screen(*norm, view) == expected


BOX_CASES = [
    ("1080p-centre-box", full(P1080), (0.4, 0.4, 0.6, 0.6), Point(960, 540)),
    ("1080p-edge-box", full(P1080), (0.9, 0.9, 1.0, 1.0), Point(1824, 1026)),
    ("hidpi-box", full(RETINA), (0.4, 0.4, 0.6, 0.6), Point(720, 450)),
    ("negative-origin-box", full(LEFT), (0.0, 0.0, 0.5, 0.5), Point(-1440, 270)),
    ("crop-box", View(P1080, Region(800, 400, 320, 200), 320, 208), (0.0, 0.0, 1.0, 1.0),
     Point(960, 500)),
]


@pytest.mark.parametrize(("view", "box", "expected"), [c[1:] for c in BOX_CASES],
                         ids=[c[0] for c in BOX_CASES])
def test_box_to_screen_uses_the_centre(view: View, box: tuple[float, float, float, float],
                                       expected: Point) -> None:
    assert box_to_screen(box, view) == expected
    assert box_to_screen(box, view) == norm_to_screen(*box_center(box), view)


ROUND_TRIP_VIEWS = [
    ("1080p", full(P1080)),
    ("hidpi", full(RETINA)),
    ("negative-origin", full(LEFT)),
    ("negative-origin-hidpi", full(LEFT_RETINA)),
    ("fractional-scale", full(FRACTIONAL)),
    ("crop", View(P1080, Region(801, 399, 333, 211), 336, 208)),
    ("crop-hidpi-negative-origin-odd-offset", View(LEFT_RETINA, Region(1001, 601, 401, 299),
                                                   400, 304)),
    ("extreme-wide", full(WIDE)),
]


def _points_in(view: View, rng: random.Random, n: int) -> list[Point]:
    """Random screen points whose pixel centre lies inside the view's region."""
    r, s = view.region, view.screen
    # A point's pixel centre is (p - origin + 0.5) * scale; keep it inside [r.x, r.x + width).
    lo_x = math.ceil(r.x / s.scale - 0.5)
    hi_x = math.ceil((r.x + r.width) / s.scale - 0.5) - 1
    lo_y = math.ceil(r.y / s.scale - 0.5)
    hi_y = math.ceil((r.y + r.height) / s.scale - 0.5) - 1
    corners = [(lo_x, lo_y), (hi_x, hi_y), (lo_x, hi_y), (hi_x, lo_y)]
    pts = corners + [(rng.randint(lo_x, hi_x), rng.randint(lo_y, hi_y)) for _ in range(n)]
    return [Point(s.left + x, s.top + y) for x, y in pts]


@pytest.mark.parametrize("view", [v for _, v in ROUND_TRIP_VIEWS],
                         ids=[i for i, _ in ROUND_TRIP_VIEWS])
def test_screen_to_norm_round_trips(view: View) -> None:
    rng = random.Random(1234)
    for point in _points_in(view, rng, 500):
        nx, ny = screen_to_norm(point, view)
        assert 0.0 <= nx < 1.0 and 0.0 <= ny < 1.0, point
        assert norm_to_screen(nx, ny, view) == point


def test_view_full_covers_the_physical_screenshot() -> None:
    view = View.full(RETINA, 1280, 800)
    assert view.region == Region(0, 0, 2880, 1800)
    assert (RETINA.pixel_width, RETINA.pixel_height) == (2880, 1800)


CROP_CASES = [
    ("middle-half", full(P1080), (0.25, 0.25, 0.75, 0.75), Region(480, 270, 960, 540)),
    ("hidpi-quarter", full(RETINA), (0.5, 0.5, 1.0, 1.0), Region(1440, 900, 1440, 900)),
    ("reversed-box-is-ordered", full(P1080), (0.75, 0.75, 0.25, 0.25),
     Region(480, 270, 960, 540)),
    ("overshoot-is-clipped", full(P1080), (0.9, 0.9, 1.05, 1.2), Region(1728, 972, 192, 108)),
    ("edge-box-keeps-one-pixel", full(P1080), (1.0, 1.0, 1.0, 1.0), Region(1919, 1079, 1, 1)),
    ("point-box-keeps-one-pixel", full(P1080), (0.5, 0.5, 0.5, 0.5), Region(960, 540, 1, 1)),
]


@pytest.mark.parametrize(("view", "box", "region"), [c[1:] for c in CROP_CASES],
                         ids=[c[0] for c in CROP_CASES])
def test_crop_view(view: View, box: tuple[float, float, float, float], region: Region) -> None:
    crop = crop_view(view, box, image_width=640, image_height=368)
    assert crop.region == region
    assert crop.screen == view.screen
    assert (crop.image_width, crop.image_height) == (640, 368)


def test_crop_view_of_a_crop_maps_back() -> None:
    outer = crop_view(full(LEFT_RETINA), (0.25, 0.25, 0.75, 0.75),
                      image_width=1440, image_height=896)
    assert outer.region == Region(720, 450, 1440, 900)
    inner = crop_view(outer, (0.5, 0.5, 1.0, 1.0), image_width=720, image_height=448)
    assert inner.region == Region(1440, 900, 720, 450)
    # The inner crop's centre is pixel (1800, 1125): point (900, 562) on a monitor at (-1440, -900).
    assert norm_to_screen(0.5, 0.5, inner) == Point(-1440 + 900, -900 + 562)


CONTAINS_CASES = [
    ("left-top-corner", Point(-1920, 0), True),
    ("right-bottom-pixel", Point(-1, 1079), True),
    ("primary-origin", Point(0, 0), False),
    ("left-of-it", Point(-1921, 5), False),
    ("below-it", Point(-5, 1080), False),
]


@pytest.mark.parametrize(("point", "inside"), [c[1:] for c in CONTAINS_CASES],
                         ids=[c[0] for c in CONTAINS_CASES])
def test_contains(point: Point, inside: bool) -> None:
    assert LEFT.contains(point) is inside


CORNER_CASES = [
    ("on-a-corner", Point(-1920, 0), 0),
    ("near-top-left", Point(-1915, 3), 5),
    ("near-bottom-right", Point(-2, 1077), 2),
    ("centre", Point(-960, 540), 959),
]


@pytest.mark.parametrize(("point", "distance"), [c[1:] for c in CORNER_CASES],
                         ids=[c[0] for c in CORNER_CASES])
def test_corner_distance(point: Point, distance: int) -> None:
    assert LEFT.corner_distance(point) == distance


def _bad_view() -> View:
    return View(P1080, Region(1900, 0, 100, 100), 96, 96)


ERROR_CASES = [
    ("zero-width", lambda: ScreenGeometry(0, 0, 0, 1080), "size must be positive"),
    ("negative-height", lambda: ScreenGeometry(0, 0, 1920, -1), "size must be positive"),
    ("zero-scale", lambda: ScreenGeometry(0, 0, 1920, 1080, scale=0), "scale"),
    ("negative-scale", lambda: ScreenGeometry(0, 0, 1920, 1080, scale=-2.0), "scale"),
    ("nan-scale", lambda: ScreenGeometry(0, 0, 1920, 1080, scale=math.nan), "scale"),
    ("inf-scale", lambda: ScreenGeometry(0, 0, 1920, 1080, scale=math.inf), "scale"),
    ("empty-region", lambda: Region(0, 0, 0, 5), "size must be positive"),
    ("negative-region-origin", lambda: Region(-1, 0, 5, 5), "must not be negative"),
    ("region-past-the-edge", _bad_view, "does not fit"),
    ("region-past-hidpi-edge", lambda: View(RETINA, Region(0, 0, 2881, 10), 16, 16),
     "does not fit"),
    ("zero-image-size", lambda: View(P1080, Region(0, 0, 10, 10), 0, 16), "image size"),
]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_constructor_errors(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_a_box_in_points_becomes_the_pixels_of_its_monitor() -> None:
    retina = ScreenGeometry(left=1440, top=0, width=1280, height=800, scale=2.0)
    assert retina.pixel_box((1540, 10, 1600, 40)) == (200, 20, 320, 80)
    assert ScreenGeometry(0, 0, 800, 600).pixel_box((5, 6, 7, 8)) == (5, 6, 7, 8)
