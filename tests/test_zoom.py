"""Zooming in: the rule, the crop, the exact mapping back, the token table, and the loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deskpilot.actions.executor import RecordingDevice
from deskpilot.actions.types import Click
from deskpilot.actions.validate import validate
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import Outcome, Status
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.settings import ModelSettings
from deskpilot.grounding.capture import FakeScreen
from deskpilot.grounding.geometry import Region, ScreenGeometry, View, box_to_screen, crop_view
from deskpilot.grounding.preprocess import fit_to_patches
from deskpilot.grounding.zoom import (
    MAX_CROP_SHARE,
    MAX_DOWNSCALE,
    SMALL_BOX_PX,
    NormBox,
    plan_zoom,
    refine_box,
    tokens_for,
    wants_zoom,
    zoom_region,
)
from deskpilot.models.grounder import GroundingPrompt
from deskpilot.models.runtime import Mode, Reply
from deskpilot.models.scripted import ScriptedRuntime
from tests.test_loop import FakeClock

P1080 = ScreenGeometry(0, 0, 1920, 1080)
P4K = ScreenGeometry(0, 0, 3840, 2160)
LEFT_RETINA = ScreenGeometry(-1440, -900, 1440, 900, scale=2.0, index=2)   # 2880x1800 px
FRACTIONAL = ScreenGeometry(0, 0, 1280, 720, scale=1.5)                    # 1920x1080 px
ODD = ScreenGeometry(-1707, 13, 1707, 960, scale=1.25)                     # 2134x1200 px
SMALL = ScreenGeometry(0, 0, 800, 600)


def budgeted(screen: ScreenGeometry, max_patches: int = 1024) -> View:
    """The loop's first view: the whole monitor at a patch budget."""
    w, h = fit_to_patches(screen.pixel_width, screen.pixel_height, max_patches=max_patches)
    return View.full(screen, w, h)


def crop_of(first: View, box: NormBox, zoom_patches: int = 1024) -> View:
    """The crop's view, as prepare() builds it for zoom_region's region."""
    region = zoom_region(first, box, zoom_patches=zoom_patches)
    w, h = fit_to_patches(region.width, region.height, max_patches=zoom_patches,
                          min_patches=min(256, zoom_patches))
    return View(first.screen, region, w, h)


# --------------------------------------------------------------------------- the rule

RULE_CASES = [
    # id, box w, box h, first downscale, crop w, crop h, crop downscale, zoom?
    ("tiny-box-native-first-view", 20, 20, 1.0, 512, 512, 1.0, False),   # nothing finer to see
    ("tiny-box-1080p-at-3600", 40, 20, 1.5, 512, 512, 1.0, True),        # small box
    ("medium-box-1080p-at-3600", 100, 60, 1.5, 512, 512, 1.0, False),    # not small, 1.5x only
    ("medium-box-1080p-at-1024", 100, 60, 2.857, 512, 512, 1.0, True),   # coarse first view
    ("box-side-just-under-small", SMALL_BOX_PX - 0.5, 200, 1.4, 512, 512, 1.0, True),
    ("box-side-at-small", SMALL_BOX_PX, 200, 1.4, 512, 512, 1.0, False),
    ("downscale-at-limit", 100, 100, MAX_DOWNSCALE, 512, 512, 1.0, False),
    ("downscale-over-limit", 100, 100, MAX_DOWNSCALE + 0.01, 512, 512, 1.0, True),
    ("box-fills-half-the-crop", 256, 40, 4.5, 512, 512, 1.0, True),
    ("box-wider-than-half-the-crop", 257, 40, 4.5, 512, 512, 1.0, False),
    ("tall-thin-box-too-tall", 10, 400, 4.5, 512, 512, 1.0, False),
    ("crop-barely-finer", 20, 20, 1.1, 512, 512, 1.0, False),
    ("crop-itself-shrunk", 20, 20, 2.0, 512, 512, 1.8, False),
    ("degenerate-point-box", 0, 0, 2.0, 512, 512, 1.0, True),
]


@pytest.mark.parametrize("case", RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_rule(case: tuple) -> None:
    _, box_w, box_h, first, crop_w, crop_h, crop, expected = case
    assert wants_zoom(box_w, box_h, first_downscale=first, crop_w=crop_w, crop_h=crop_h,
                      crop_downscale=crop) is expected


def test_plan_zoom_uses_screenshot_pixels() -> None:
    small = (0.5, 0.5, 0.51, 0.51)                      # 19x11 px on 1080p
    medium = (0.5, 0.5, 0.55, 0.56)                     # 96x65 px
    large = (0.1, 0.1, 0.5, 0.5)                        # 768x432 px: would not fit the crop
    assert plan_zoom(budgeted(P1080, 1024), small, zoom_patches=1024) is not None
    assert plan_zoom(budgeted(P1080, 1024), medium, zoom_patches=1024) is not None
    assert plan_zoom(budgeted(P1080, 1024), large, zoom_patches=1024) is None
    # At 3600 patches 1080p is shrunk exactly 1.5x: only the small box is worth a second look.
    assert plan_zoom(budgeted(P1080, 3600), small, zoom_patches=1024) is not None
    assert plan_zoom(budgeted(P1080, 3600), medium, zoom_patches=1024) is None
    # A screen shown at native size has nothing finer to show.
    assert plan_zoom(budgeted(SMALL, 3600), small, zoom_patches=1024) is None
    # HiDPI: 0.01 of 2880 px is 29 px, small although it is ~14 points.
    assert plan_zoom(budgeted(LEFT_RETINA, 3600), small, zoom_patches=1024) is not None


# --------------------------------------------------------------------------- the crop

REGION_CASES = [
    # id, first view, box, zoom patches, expected region
    ("centred", budgeted(P1080), (0.5, 0.5, 0.5, 0.5), 1024, Region(704, 284, 512, 512)),
    ("off-centre", budgeted(P1080), (0.25, 0.25, 0.26, 0.27), 1024,
     Region(234, 25, 512, 512)),
    ("top-left-edge-slides-in", budgeted(P1080), (0.0, 0.0, 0.01, 0.01), 1024,
     Region(0, 0, 512, 512)),
    ("bottom-right-edge-slides-in", budgeted(P1080), (0.99, 0.99, 1.0, 1.0), 1024,
     Region(1408, 568, 512, 512)),
    ("budget-not-square", budgeted(P1080), (0.5, 0.5, 0.5, 0.5), 1000,
     Region(712, 292, 496, 496)),
    ("bigger-budget", budgeted(P4K), (0.5, 0.5, 0.5, 0.5), 3600, Region(1440, 600, 960, 960)),
    ("short-screen-clips-to-whole-patches", budgeted(ScreenGeometry(0, 0, 2000, 300)),
     (0.5, 0.5, 0.5, 0.5), 1024, Region(744, 6, 512, 288)),
    ("tiny-screen", budgeted(ScreenGeometry(0, 0, 10, 7)), (0.5, 0.5, 0.5, 0.5), 1024,
     Region(0, 0, 10, 7)),
    ("first-view-is-a-crop", View(P1080, Region(1000, 500, 600, 400), 304, 208),
     (1.0, 1.0, 1.0, 1.0), 1024, Region(1088, 500, 512, 400)),
]


@pytest.mark.parametrize(("first", "box", "patches", "expected"),
                         [c[1:] for c in REGION_CASES], ids=[c[0] for c in REGION_CASES])
def test_zoom_region(first: View, box: NormBox, patches: int, expected: Region) -> None:
    region = zoom_region(first, box, zoom_patches=patches)
    assert region == expected
    crop = View(first.screen, region, region.width, region.height)  # inside the screenshot
    r = first.region
    assert r.x <= crop.region.x and crop.region.x + crop.region.width <= r.x + r.width
    assert r.y <= crop.region.y and crop.region.y + crop.region.height <= r.y + r.height


def test_zoom_region_is_shown_without_resizing() -> None:
    for patches in (256, 576, 1024, 1600, 3600):
        region = zoom_region(budgeted(P4K), (0.3, 0.6, 0.31, 0.61), zoom_patches=patches)
        assert fit_to_patches(region.width, region.height, max_patches=patches) \
            == (region.width, region.height)


def test_zoom_region_rejects_an_empty_budget() -> None:
    with pytest.raises(ValueError, match="zoom_patches"):
        zoom_region(budgeted(P1080), (0.5, 0.5, 0.5, 0.5), zoom_patches=0)


def test_zoom_region_agrees_with_crop_view() -> None:
    # The same pixels, expressed as a box of the first view, give the same region.
    first = budgeted(P1080)
    region = zoom_region(first, (0.3, 0.4, 0.31, 0.41), zoom_patches=1024)
    r = first.region
    eps = 1e-9
    box = ((region.x - r.x + eps) / r.width, (region.y - r.y + eps) / r.height,
           (region.x + region.width - r.x - eps) / r.width,
           (region.y + region.height - r.y - eps) / r.height)
    assert crop_view(first, box, image_width=512, image_height=512).region == region


# --------------------------------------------------------------------------- mapping back

def _assert_same_point(first: View, crop: View, crop_box: NormBox) -> NormBox:
    refined = refine_box(first, crop, crop_box)
    assert all(0.0 <= v <= 1.0 for v in refined)
    assert refined[0] <= refined[2] and refined[1] <= refined[3]
    assert box_to_screen(refined, first) == box_to_screen(crop_box, crop)
    return refined


REFINE_CASES = [
    # id, first view, first box (where the crop is centred), crop answer
    ("1080p-centre", budgeted(P1080), (0.5, 0.5, 0.51, 0.51), (0.4, 0.4, 0.6, 0.6)),
    ("1080p-answer-on-crop-origin", budgeted(P1080), (0.5, 0.5, 0.51, 0.51), (0, 0, 0, 0)),
    ("1080p-answer-on-crop-far-corner", budgeted(P1080), (0.5, 0.5, 0.51, 0.51), (1, 1, 1, 1)),
    ("1080p-crop-at-left-edge", budgeted(P1080), (0.0, 0.3, 0.01, 0.31), (0, 0.5, 0.01, 0.5)),
    ("1080p-crop-at-bottom-right", budgeted(P1080), (0.99, 0.99, 1, 1), (0.98, 0.97, 1, 1)),
    ("4k", budgeted(P4K), (0.7, 0.2, 0.705, 0.21), (0.123, 0.456, 0.189, 0.5)),
    ("negative-origin-hidpi", budgeted(LEFT_RETINA), (0.2, 0.8, 0.21, 0.81),
     (0.3333, 0.6667, 0.35, 0.7)),
    ("negative-origin-hidpi-far-corner", budgeted(LEFT_RETINA), (0.99, 0.99, 1, 1), (1, 1, 1, 1)),
    ("fractional-scale", budgeted(FRACTIONAL), (0.41, 0.13, 0.42, 0.15), (0.5, 0.5, 0.5, 0.5)),
    ("fractional-scale-edge", budgeted(FRACTIONAL), (0.999, 0.0, 1, 0.001), (1, 0, 1, 0)),
    ("odd-scale-negative-origin", budgeted(ODD), (0.37, 0.61, 0.38, 0.62),
     (0.0001, 0.9999, 0.0002, 1.0)),
    ("first-view-is-a-crop", View(P1080, Region(1000, 500, 600, 400), 304, 208),
     (0.9, 0.9, 1, 1), (0.99, 0.01, 1.0, 0.02)),
]


@pytest.mark.parametrize(("first", "first_box", "crop_box"), [c[1:] for c in REFINE_CASES],
                         ids=[c[0] for c in REFINE_CASES])
def test_refine_box_keeps_the_crop_answers_point(first: View, first_box: NormBox,
                                                 crop_box: NormBox) -> None:
    refined = _assert_same_point(first, crop_of(first, first_box), crop_box)
    Click(action="click", box=refined)  # a valid action box


def test_refine_box_keeps_the_answers_size() -> None:
    first = budgeted(P1080)
    crop = crop_of(first, (0.5, 0.5, 0.5, 0.5))             # 512x512 at (704, 284)
    x1, y1, x2, y2 = refine_box(first, crop, (0.25, 0.25, 0.3125, 0.28125))   # 32x16 px
    assert (x2 - x1) * 1920 == pytest.approx(32) and (y2 - y1) * 1080 == pytest.approx(16)
    assert ((x1 + x2) / 2 * 1920, (y1 + y2) / 2 * 1080) == pytest.approx((848.5, 420.5))


def test_refine_box_checks_its_views() -> None:
    first = View(P1080, Region(0, 0, 960, 540), 960, 544)
    with pytest.raises(ValueError, match="outside"):
        refine_box(first, View(P1080, Region(900, 0, 512, 512), 512, 512), (0.5,) * 4)
    with pytest.raises(ValueError, match="different monitors"):
        refine_box(first, View(FRACTIONAL, Region(0, 0, 512, 512), 512, 512), (0.5,) * 4)


SCALES = st.sampled_from([1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 0.75])
NORM = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def boxes(draw: st.DrawFn) -> NormBox:
    x1, x2 = sorted((draw(NORM), draw(NORM)))
    y1, y2 = sorted((draw(NORM), draw(NORM)))
    return (x1, y1, x2, y2)


@st.composite
def screens(draw: st.DrawFn) -> ScreenGeometry:
    return ScreenGeometry(draw(st.integers(-5000, 5000)), draw(st.integers(-5000, 5000)),
                          draw(st.integers(1, 4000)), draw(st.integers(1, 3000)),
                          scale=draw(SCALES))


@settings(max_examples=800, deadline=None)
@given(screens(), st.integers(256, 3600), st.integers(16, 3600), boxes(), boxes())
def test_refine_box_round_trips(screen: ScreenGeometry, max_patches: int, zoom_patches: int,
                                first_box: NormBox, crop_box: NormBox) -> None:
    first = budgeted(screen, max_patches)
    _assert_same_point(first, crop_of(first, first_box, zoom_patches), crop_box)


@settings(max_examples=500, deadline=None)
@given(screens(), st.data(), st.integers(16, 3600), boxes(), boxes())
def test_refine_box_round_trips_from_a_cropped_first_view(
        screen: ScreenGeometry, data: st.DataObject, zoom_patches: int, first_box: NormBox,
        crop_box: NormBox) -> None:
    pw, ph = screen.pixel_width, screen.pixel_height
    assume(pw >= 1 and ph >= 1)
    x = data.draw(st.integers(0, pw - 1))
    y = data.draw(st.integers(0, ph - 1))
    region = Region(x, y, data.draw(st.integers(1, pw - x)), data.draw(st.integers(1, ph - y)))
    first = View(screen, region, 320, 240)
    _assert_same_point(first, crop_of(first, first_box, zoom_patches), crop_box)


# --------------------------------------------------------------------------- the token table

def test_tokens_for_strategies() -> None:
    for w, h in ((1920, 1080), (3840, 2160)):
        assert tokens_for(w, h, 3600) == 3600
        assert tokens_for(w, h, 1600) == 1590          # 848x480
        assert tokens_for(w, h, 1024) == 1008          # 672x384
        assert tokens_for(w, h, 1024, zoom_patches=1024) == 1008 + 1024
    assert tokens_for(800, 600, 3600) == 50 * 38           # shown as it is (rounded to patches)
    assert tokens_for(400, 300, 3600, zoom_patches=1024) == 25 * 19 + 25 * 18  # crop 400x288
    assert MAX_CROP_SHARE * 512 == 256


# --------------------------------------------------------------------------- the loop

TARGET = "the OK button"
SMALL_CLICK = json.dumps({"action": "click", "target": TARGET, "box": [0.5, 0.5, 0.51, 0.51]})
ZOOM_CLICK = json.dumps({"action": "click", "target": TARGET, "box": [0.25, 0.25, 0.27, 0.27]})
DONE = '{"action": "done", "answer": "ok"}'
FIRST_POINT = ("move", 969, 545)    # centre of the first box: (969.6, 545.4) px
CROP = Region(714, 289, 512, 512)   # 512x512 centred there
ZOOM_POINT = ("move", 714 + 133, 289 + 133)  # 0.26 of the crop


def _run(tmp_path: Path, replies: list[str | Reply], *, zoom: bool = True,
         screen: FakeScreen | None = None):
    runtime = ScriptedRuntime(replies)
    device = RecordingDevice()
    result = run_agent("press OK", runtime=runtime,
                       screen=screen or FakeScreen(np.zeros((1080, 1920, 3), np.uint8)),
                       device=device, record=RunDir(tmp_path), clock=FakeClock(),
                       settings=ModelSettings(max_patches=1024, zoom=zoom, zoom_patches=1024,
                                              grounding=GroundingPrompt.JOINT))
    return result, runtime, device


def _moves(device: RecordingDevice) -> list[tuple[object, ...]]:
    return [c for c in device.calls if c[0] == "move"]


def _trajectory(result) -> list[dict]:
    return [json.loads(line) for line in (result.run_dir / "trajectory.jsonl").read_text()
            .splitlines()]


def test_zoom_refines_a_small_click(tmp_path: Path) -> None:
    replies: list[str | Reply] = [
        Reply(SMALL_CLICK, image_tokens=1008, timings={"prefill_s": 0.5}),
        Reply(ZOOM_CLICK, image_tokens=1024, timings={"prefill_s": 0.25}), DONE]
    result, runtime, device = _run(tmp_path, replies)
    assert result.status is Status.DONE
    assert _moves(device) == [ZOOM_POINT]
    # The second request is a direct-mode locate call on the native-resolution crop.
    zoom = runtime.requests[1]
    assert zoom.mode is Mode.DIRECT and f"Element: {TARGET}" in zoom.prompt
    assert zoom.image is not None and zoom.image.view.region == CROP
    assert (zoom.image.width, zoom.image.height) == (512, 512)
    assert len(runtime.requests) == 3  # the done step is not zoomed
    line = _trajectory(result)[0]
    assert line["image_tokens"] == 1008 + 1024 and line["zoom_image_tokens"] == 1024
    assert line["model_timings"]["prefill_s"] == 0.5
    assert line["model_timings"]["zoom_prefill_s"] == 0.25 and "zoom_s" in line["model_timings"]
    assert line["points"] == [list(ZOOM_POINT[1:])]
    # The recorded action holds the refined box, in the first view's coordinates.
    first = View.full(P1080, 672, 384)
    assert box_to_screen(tuple(line["action"]["box"]), first) == box_to_screen(
        (0.25, 0.25, 0.27, 0.27), View(P1080, CROP, 512, 512))
    assert line["reply"]["answer"] == SMALL_CLICK  # the model's own first answer is kept


@pytest.mark.parametrize("zoom_answer", [
    "not json",
    '{"action": "move", "box": [0.2, 0.2, 0.3, 0.3]}',      # not a click
    '{"action": "click", "box": [0, 0, 0, 0]}',              # on the crop's edge: not found
    '{"action": "click", "box": [0.9, 0.9, 1, 1]}',          # centre inside, but fine
], ids=["unparseable", "not-a-click", "crop-edge", "usable"])
def test_an_unusable_zoom_answer_keeps_the_first_point(tmp_path: Path, zoom_answer: str) -> None:
    result, runtime, device = _run(tmp_path, [SMALL_CLICK, zoom_answer, DONE])
    assert result.status is Status.DONE and len(runtime.requests) == 3
    assert [s.outcome for s in result.steps] == [Outcome.EXECUTED, Outcome.TERMINAL]
    if zoom_answer.endswith("[0.9, 0.9, 1, 1]}"):
        assert _moves(device) == [("move", 714 + 486, 289 + 486)]
    else:
        assert _moves(device) == [FIRST_POINT]
        assert result.steps[0].action is not None
        assert result.steps[0].action["box"] == (0.5, 0.5, 0.51, 0.51)


def test_zoom_refusing_a_corner_keeps_the_first_point(tmp_path: Path) -> None:
    corner_click = json.dumps({"action": "click", "target": "close", "box": [0, 0, 0.01, 0.01]})
    _result, runtime, device = _run(tmp_path, [corner_click, ZOOM_CLICK.replace(
        "[0.25, 0.25, 0.27, 0.27]", "[0.001, 0.001, 0.002, 0.002]"), DONE])
    assert runtime.requests[1].image is not None
    assert runtime.requests[1].image.view.region == Region(0, 0, 512, 512)
    assert _moves(device) == [("move", 9, 5)]  # the first box; the zoom's (0, 0) is refused


def test_zoom_off_makes_one_call_per_step(tmp_path: Path) -> None:
    result, runtime, device = _run(tmp_path, [SMALL_CLICK, DONE], zoom=False)
    assert result.status is Status.DONE and len(runtime.requests) == 2
    assert _moves(device) == [FIRST_POINT]
    assert _trajectory(result)[0]["zoom_image_tokens"] == 0
    assert "zoom_s" not in _trajectory(result)[0]["model_timings"]


@pytest.mark.parametrize("answer", [
    '{"action": "click", "box": [0.5, 0.5, 0.51, 0.51]}',                        # no target
    '{"action": "click", "target": "a panel", "box": [0.1, 0.1, 0.6, 0.6]}',     # large
    '{"action": "type", "text": "hello"}',                                       # no pointer
], ids=["no-target", "large-box", "keyboard"])
def test_no_zoom_call_when_it_cannot_help(tmp_path: Path, answer: str) -> None:
    result, runtime, _ = _run(tmp_path, [answer, DONE])
    assert result.status is Status.DONE and len(runtime.requests) == 2


def test_zoom_refines_only_the_drag_start(tmp_path: Path) -> None:
    drag = json.dumps({"action": "drag", "target": "the slider knob",
                       "box": [0.5, 0.5, 0.51, 0.51], "to_box": [0.8, 0.5, 0.8, 0.5]})
    result, _, device = _run(tmp_path, [drag, ZOOM_CLICK, DONE])
    moves = _moves(device)  # the drag glides in steps from the refined start to the end
    assert moves[0] == ZOOM_POINT and moves[-1] == ("move", 1536, 540)
    assert result.steps[0].action is not None
    assert result.steps[0].action["to_box"] == (0.8, 0.5, 0.8, 0.5)


def test_a_runtime_failure_while_zooming_ends_the_run(tmp_path: Path) -> None:
    result, _, device = _run(tmp_path, [SMALL_CLICK])  # the script runs out on the zoom call
    assert result.status is Status.RUNTIME_ERROR and "exhausted" in result.message
    assert device.calls == []


def test_zoomed_step_validates_in_the_first_view() -> None:
    # What the loop relies on: validate(refined action, first view) gives the crop's point.
    first = View.full(P1080, 672, 384)
    crop = View(P1080, CROP, 512, 512)
    refined = refine_box(first, crop, (0.25, 0.25, 0.27, 0.27))
    resolved = validate(Click(action="click", target=TARGET, box=refined), first)
    assert (resolved.points[0].x, resolved.points[0].y) == ZOOM_POINT[1:]
