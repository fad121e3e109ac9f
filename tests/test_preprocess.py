"""Model image sizing and preparation, plus the frame types it consumes (no display needed)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from deskpilot.grounding.capture import CaptureError, FakeScreen, Frame, Screen, bgra_to_rgb
from deskpilot.grounding.geometry import Point, Region, ScreenGeometry, View, norm_to_screen
from deskpilot.grounding.preprocess import (
    DEFAULT_MAX_PATCHES,
    DEFAULT_MIN_PATCHES,
    ModelImage,
    fit_to_patches,
    prepare,
)


def mtmd_target(width: int, height: int, *, min_patches: int = 256, max_patches: int = 3600,
                align: int = 16) -> tuple[int, int]:
    """An independent transcription of llama.cpp's calc_size_preserved_ratio, in float32 as in C++.

    (vendor/llama.cpp/tools/mtmd/mtmd-image.cpp, llama-cpp-python 0.3.36; Phi-4 passes
    align = patch 16, min/max pixels = 256/3600 patches of 16x16, no longest edge.)
    """
    f32 = np.float32
    min_px, max_px = min_patches * align * align, max_patches * align * align

    def by(op: object, x: np.float32) -> int:
        return int(op(f32(x) / f32(align))) * align  # type: ignore[operator]

    def rnd(x: np.float32) -> int:  # std::round: halves away from zero
        return by(lambda v: math.floor(float(v) + 0.5), x)

    w_bar = max(align, rnd(f32(width)))
    h_bar = max(align, rnd(f32(height)))
    if h_bar * w_bar > max_px:
        beta = np.sqrt(f32(height) * f32(width) / f32(max_px), dtype=f32)
        h_bar = max(align, by(np.floor, f32(height) / beta))
        w_bar = max(align, by(np.floor, f32(width) / beta))
    elif h_bar * w_bar < min_px:
        beta = np.sqrt(f32(min_px) / (f32(height) * f32(width)), dtype=f32)
        h_bar = by(np.ceil, f32(height) * beta)
        w_bar = by(np.ceil, f32(width) * beta)
    return w_bar, h_bar


FIT_CASES = [
    # id, (width, height), keyword arguments, expected size
    ("1080p", (1920, 1080), {}, (1280, 720)),
    ("4k", (3840, 2160), {}, (1280, 720)),
    ("720p-is-exactly-3600", (1280, 720), {}, (1280, 720)),
    ("retina-2880x1800", (2880, 1800), {}, (1200, 752)),
    ("small-stays-rounded", (300, 200), {}, (304, 208)),
    ("round-half-up", (1000, 8), {}, (1008, 16)),
    ("1080p-budget-1600", (1920, 1080), {"max_patches": 1600}, (848, 480)),
    ("1080p-budget-1024", (1920, 1080), {"max_patches": 1024}, (672, 384)),
    ("4k-budget-1024", (3840, 2160), {"max_patches": 1024}, (672, 384)),
    ("extreme-wide", (100000, 20), {}, (57600, 16)),
    ("extreme-tall", (20, 100000), {}, (16, 57600)),
    ("one-patch", (16, 16), {}, (16, 16)),
    ("one-pixel", (1, 1), {}, (16, 16)),
    ("budget-of-one", (1920, 1080), {"max_patches": 1}, (16, 16)),
    ("small-enlarged-to-min", (300, 200), {"min_patches": 256}, (320, 224)),
    ("patch-14", (1920, 1080), {"patch": 14}, (1120, 630)),
    ("narrow-window-after-flooring", (5000, 6885), {"max_patches": 263, "min_patches": 256},
     (208, 320)),
]


@pytest.mark.parametrize(("size", "kwargs", "expected"), [c[1:] for c in FIT_CASES],
                         ids=[c[0] for c in FIT_CASES])
def test_fit_to_patches(size: tuple[int, int], kwargs: dict[str, int],
                        expected: tuple[int, int]) -> None:
    out = fit_to_patches(*size, **kwargs)
    assert out == expected
    patch = kwargs.get("patch", 16)
    budget = kwargs.get("max_patches", DEFAULT_MAX_PATCHES)
    assert (out[0] // patch) * (out[1] // patch) <= budget


@pytest.mark.parametrize(("size", "budget"), [((1920, 1080), 3600), ((3840, 2160), 3600),
                                              ((1920, 1080), 1024), ((2880, 1800), 3600)],
                         ids=["1080p", "4k", "1080p-1024", "retina"])
def test_fit_keeps_the_aspect_ratio(size: tuple[int, int], budget: int) -> None:
    w, h = fit_to_patches(*size, max_patches=budget)
    assert abs((w / h) / (size[0] / size[1]) - 1) < 0.02


BAD_ARGS = [
    ("zero-width", (0, 10), {}, "width"),
    ("negative-height", (10, -1), {}, "height"),
    ("zero-budget", (10, 10), {"max_patches": 0}, "max_patches"),
    ("zero-patch", (10, 10), {"patch": 0}, "patch"),
    ("min-above-max", (10, 10), {"max_patches": 100, "min_patches": 101}, "min_patches"),
    ("negative-min", (10, 10), {"min_patches": -1}, "min_patches"),
]


@pytest.mark.parametrize(("size", "kwargs", "message"), [c[1:] for c in BAD_ARGS],
                         ids=[c[0] for c in BAD_ARGS])
def test_fit_rejects_bad_arguments(size: tuple[int, int], kwargs: dict[str, int],
                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_to_patches(*size, **kwargs)


def _random_size(rng: random.Random) -> tuple[int, int]:
    kind = rng.random()
    if kind < 0.1:  # extreme aspect ratios
        return rng.randint(1, 40), rng.randint(10_000, 200_000)
    if kind < 0.2:
        return rng.randint(10_000, 200_000), rng.randint(1, 40)
    if kind < 0.4:  # small images and crops
        return rng.randint(1, 300), rng.randint(1, 300)
    return rng.randint(1, 8000), rng.randint(1, 8000)


def test_fit_invariants_over_random_sizes_and_budgets() -> None:
    rng = random.Random(20240611)
    for _ in range(5000):
        w, h = _random_size(rng)
        budget = rng.choice([1, 2, 7, 64, 255, 256, 1024, 1600, 3600, rng.randint(1, 5000)])
        floor = rng.choice([0, min(256, budget), rng.randint(0, budget)])
        patch = rng.choice([16, 16, 16, 14, 32])
        ow, oh = fit_to_patches(w, h, max_patches=budget, min_patches=floor, patch=patch)
        case = (w, h, budget, floor, patch, ow, oh)
        assert ow % patch == 0 and oh % patch == 0, case
        assert ow >= patch and oh >= patch, case
        cols, rows = ow // patch, oh // patch
        assert floor <= cols * rows <= budget, case
        rounded = (max(1, math.floor(w / patch + 0.5)), max(1, math.floor(h / patch + 0.5)))
        if floor <= rounded[0] * rounded[1] <= budget:
            # Already within budget: only rounded to the grid, never enlarged or shrunk.
            assert (cols, rows) == rounded, case
        if budget >= 2 * floor and min(cols, rows) >= 10 and min(w, h) >= 10 * patch:
            assert abs(math.log((ow / oh) / (w / h))) < 0.12, case


def test_llama_cpp_keeps_our_size() -> None:
    """Whatever budget we pick (<= 3600), mtmd's own resize of our output is the identity."""
    rng = random.Random(7)
    for _ in range(3000):
        w, h = _random_size(rng)
        budget = rng.randint(DEFAULT_MIN_PATCHES, DEFAULT_MAX_PATCHES)
        out = fit_to_patches(w, h, max_patches=budget, min_patches=DEFAULT_MIN_PATCHES)
        assert mtmd_target(*out) == out, (w, h, budget, out)


def test_fit_matches_llama_cpp_where_it_keeps_its_budget() -> None:
    rng = random.Random(99)
    checked = 0
    for _ in range(3000):
        w, h = _random_size(rng)
        expected = mtmd_target(w, h)
        if (expected[0] // 16) * (expected[1] // 16) > 3600:
            continue  # extreme aspect: llama.cpp overshoots there and we trim instead
        assert fit_to_patches(w, h, min_patches=256) == expected, (w, h)
        checked += 1
    assert checked > 2000


# --- frames -------------------------------------------------------------------------------------

def _frame(width: int = 1920, height: int = 1080, screen: ScreenGeometry | None = None,
           fill: int = 40) -> Frame:
    rgb = np.full((height, width, 3), fill, np.uint8)
    return Frame(rgb, screen or ScreenGeometry(0, 0, width, height), 0.0)


def test_frame_is_read_only_and_sized() -> None:
    rgb = np.zeros((800, 1280, 3), np.uint8)
    frame = Frame(rgb, ScreenGeometry(0, 0, 1280, 800), 1.0)
    assert (frame.width, frame.height) == (1280, 800)
    assert not frame.rgb.flags.writeable
    assert rgb.flags.writeable  # the caller's array is left alone
    with pytest.raises(ValueError, match="read-only"):
        frame.rgb[0, 0, 0] = 1


FRAME_ERRORS = [
    ("wrong-dtype", np.zeros((10, 10, 3), np.float32), "uint8"),
    ("no-channels", np.zeros((10, 10), np.uint8), "H x W x 3"),
    ("rgba", np.zeros((10, 10, 4), np.uint8), "H x W x 3"),
    ("strided", np.zeros((10, 20, 3), np.uint8)[:, ::2], "contiguous"),
    ("wrong-size", np.zeros((10, 12, 3), np.uint8), "monitor is 10x10"),
]


@pytest.mark.parametrize(("rgb", "message"), [c[1:] for c in FRAME_ERRORS],
                         ids=[c[0] for c in FRAME_ERRORS])
def test_frame_errors(rgb: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Frame(rgb, ScreenGeometry(0, 0, 10, 10), 0.0)


def test_hidpi_frame_has_physical_pixels() -> None:
    frame = _frame(2880, 1800, ScreenGeometry(0, 0, 1440, 900, scale=2.0))
    assert (frame.width, frame.height) == (2880, 1800)


def test_bgra_to_rgb_swaps_channels() -> None:
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[0, 1] = (10, 20, 30, 255)  # B, G, R, A
    rgb = bgra_to_rgb(bytearray(bgra.tobytes()), 3, 2)
    assert rgb.shape == (2, 3, 3) and rgb.flags.c_contiguous
    assert tuple(rgb[0, 1]) == (30, 20, 10)
    with pytest.raises(CaptureError, match="bytes"):
        bgra_to_rgb(b"\0" * 10, 3, 2)


def test_fake_screen_sticks_on_the_last_frame() -> None:
    a, b = np.zeros((4, 6, 3), np.uint8), np.full((4, 6, 3), 9, np.uint8)
    screen = FakeScreen([a, b], clock=lambda: 5.0)
    assert isinstance(screen, Screen)
    assert screen.geometry() == ScreenGeometry(0, 0, 6, 4)
    grabbed = [screen.grab() for _ in range(3)]
    assert [int(f.rgb[0, 0, 0]) for f in grabbed] == [0, 9, 9]
    assert grabbed[0].captured_at == 5.0
    assert screen.grabs == 3
    screen.close()
    assert screen.closed


def test_fake_screen_cycles_and_takes_a_single_image() -> None:
    a, b = np.zeros((4, 6, 3), np.uint8), np.full((4, 6, 3), 9, np.uint8)
    cycling = FakeScreen([a, b], cycle=True)
    assert [int(cycling.grab().rgb[0, 0, 0]) for _ in range(4)] == [0, 9, 0, 9]
    single = FakeScreen(b, ScreenGeometry(-6, 0, 3, 2, scale=2.0))
    assert single.grab().screen.left == -6


def test_fake_screen_from_a_callable() -> None:
    geometry = ScreenGeometry(0, 0, 6, 4)
    screen = FakeScreen(lambda n: np.full((4, 6, 3), n, np.uint8), geometry)
    assert [int(screen.grab().rgb[0, 0, 0]) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="explicit geometry"):
        FakeScreen(lambda n: np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="at least one"):
        FakeScreen([])


# --- prepare ------------------------------------------------------------------------------------

def test_prepare_full_1080p() -> None:
    frame = _frame()
    image = prepare(frame)
    assert image.rgb.shape == (720, 1280, 3)
    assert image.rgb.dtype == np.uint8 and image.rgb.flags.c_contiguous
    assert image.view == View.full(frame.screen, 1280, 720)
    assert image.n_patches == 3600
    assert len(image.tobytes()) == 1280 * 720 * 3
    assert (image.width, image.height) == (1280, 720)


def test_prepare_with_a_smaller_budget() -> None:
    image = prepare(_frame(3840, 2160), max_patches=1024)
    assert (image.width, image.height) == (672, 384)
    assert image.n_patches <= 1024


def test_prepare_keeps_a_fitting_frame_as_is() -> None:
    frame = _frame(1280, 720)
    image = prepare(frame)
    assert np.shares_memory(image.rgb, frame.rgb)  # no resize, no copy
    assert image.view.region == Region(0, 0, 1280, 720)


def test_prepare_crop_records_its_region() -> None:
    region = Region(100, 50, 640, 360)
    image = prepare(_frame(), region=region)
    assert image.view.region == region
    assert (image.width, image.height) == (640, 368)


def test_prepare_enlarges_small_crops_to_the_model_floor() -> None:
    image = prepare(_frame(), region=Region(10, 10, 200, 100))
    assert image.n_patches >= DEFAULT_MIN_PATCHES
    assert mtmd_target(image.width, image.height) == (image.width, image.height)
    bare = prepare(_frame(), region=Region(10, 10, 200, 100), min_patches=0)
    assert (bare.width, bare.height) == (208, 96)


def test_prepare_rejects_a_region_outside_the_frame() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        prepare(_frame(), region=Region(1800, 0, 200, 100))


SQUARE_CASES = [
    # id, monitor, region sent to the model, square (x, y, side) in image pixels
    ("1080p-full", ScreenGeometry(0, 0, 1920, 1080), None, (1500, 200, 40)),
    ("4k-full", ScreenGeometry(0, 0, 3840, 2160), None, (3000, 1800, 60)),
    ("hidpi-full", ScreenGeometry(0, 0, 960, 540, scale=2.0), None, (1500, 200, 40)),
    ("hidpi-negative-origin-crop", ScreenGeometry(-960, -540, 960, 540, scale=2.0),
     Region(1200, 100, 500, 300), (1500, 200, 40)),
    ("small-crop-enlarged", ScreenGeometry(0, 0, 1920, 1080), Region(1450, 150, 150, 130),
     (1500, 200, 40)),
]


@pytest.mark.parametrize(("screen", "region", "square"), [c[1:] for c in SQUARE_CASES],
                         ids=[c[0] for c in SQUARE_CASES])
def test_a_red_square_maps_back_onto_itself(screen: ScreenGeometry, region: Region | None,
                                            square: tuple[int, int, int]) -> None:
    rgb = np.full((screen.pixel_height, screen.pixel_width, 3), 40, np.uint8)
    x, y, side = square
    rgb[y:y + side, x:x + side] = (255, 0, 0)
    image = prepare(Frame(rgb, screen, 0.0), region=region)

    red = (image.rgb[..., 0] > 150) & (image.rgb[..., 1] < 100) & (image.rgb[..., 2] < 100)
    ys, xs = np.nonzero(red)
    assert xs.size, "the square vanished in the resize"
    nx = (xs.mean() + 0.5) / image.width
    ny = (ys.mean() + 0.5) / image.height
    point = norm_to_screen(nx, ny, image.view)

    # The square in screen points: its pixels divided by the scale, offset by the monitor.
    s = screen.scale
    left, top = screen.left + x / s, screen.top + y / s
    inside = Point(math.floor(left + side / s / 2), math.floor(top + side / s / 2))
    assert left <= point.x < left + side / s and top <= point.y < top + side / s
    assert abs(point.x - inside.x) <= 1 and abs(point.y - inside.y) <= 1


def test_model_image_checks_its_view() -> None:
    view = View.full(ScreenGeometry(0, 0, 32, 32), 32, 32)
    with pytest.raises(ValueError, match="view says"):
        ModelImage(np.zeros((16, 32, 3), np.uint8), view)
    odd = View.full(ScreenGeometry(0, 0, 30, 30), 30, 30)
    with pytest.raises(ValueError, match="multiples of 16"):
        ModelImage(np.zeros((30, 30, 3), np.uint8), odd)
