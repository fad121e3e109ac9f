"""Template verification of cached targets on synthetic but realistic screens."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from deskpilot.grounding import template
from deskpilot.grounding.template import (
    AmbiguousMatch,
    FlatSnippet,
    Located,
    NotOnScreen,
    PixelBox,
    Snippet,
    cut,
    locate,
)

DESKTOP = (58, 110, 140)
SCREEN = (1280, 800)
WINDOW_AT = (200, 120)
WINDOW_SIZE = (720, 460)
_FONT = ImageFont.load_default(size=14)

# Buttons in window coordinates. The two OK buttons sit alone on the same plain panel, so their
# crops (with 24 px of context) are pixel-identical: the ambiguous case.
BUTTONS: dict[str, PixelBox] = {
    "Save": (10, 400, 90, 430),
    "Save As": (100, 400, 190, 430),
    "Open": (200, 400, 280, 430),
    "Cancel": (290, 400, 380, 430),
    "Help": (390, 400, 470, 430),
    "OK-1": (560, 120, 650, 150),
    "OK-2": (560, 260, 650, 290),
}
OK_GAP = BUTTONS["OK-2"][1] - BUTTONS["OK-1"][1]


def make_window(omit: Iterable[str] = ()) -> Image.Image:
    """An editor-like window: title bar, menu, a text area, a row of buttons, a side panel."""
    skip = set(omit)
    w, h = WINDOW_SIZE
    image = Image.new("RGB", WINDOW_SIZE, (236, 236, 236))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, w - 1, h - 1), outline=(60, 60, 60))
    draw.rectangle((1, 1, w - 2, 28), fill=(50, 70, 120))
    draw.text((10, 7), "Report.txt - Editor", fill=(255, 255, 255), font=_FONT)
    draw.text((10, 36), "File    Edit    View    Format    Help", fill=(20, 20, 20), font=_FONT)
    draw.rectangle((10, 60, 480, 380), fill=(255, 255, 255), outline=(150, 150, 150))
    lines = ["Quarterly report, draft 3", "", "Revenue grew 12% over the quarter,",
             "driven by the new subscription tier.", "Costs stayed flat; see table 2.",
             "", "TODO: add the regional breakdown."]
    for i, line in enumerate(lines):
        draw.text((18, 68 + 20 * i), line, fill=(30, 30, 30), font=_FONT)
    draw.rectangle((500, 60, 710, 380), fill=(225, 228, 232))
    for name, box in BUTTONS.items():
        if name in skip:
            continue
        draw.rounded_rectangle((box[0], box[1], box[2] - 1, box[3] - 1), radius=4,
                               fill=(250, 250, 250), outline=(120, 120, 120))
        label = name.split("-")[0]
        left, top, right, bottom = draw.textbbox((0, 0), label, font=_FONT)
        x = (box[0] + box[2] - (right - left)) // 2 - left
        y = (box[1] + box[3] - (bottom - top)) // 2 - top
        draw.text((x, y), label, fill=(20, 20, 20), font=_FONT)
    return image


def make_screen(window_at: tuple[int, int] = WINDOW_AT, *, size: tuple[int, int] = SCREEN,
                omit: Iterable[str] = ()) -> tuple[np.ndarray, dict[str, PixelBox]]:
    """A desktop with a top bar and the window at ``window_at``; boxes in screen pixels."""
    screen = Image.new("RGB", size, DESKTOP)
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, size[0] - 1, 23), fill=(30, 30, 30))
    draw.text((6, 5), "Activities", fill=(230, 230, 230), font=_FONT)
    draw.text((size[0] // 2 - 30, 5), "Tue 14:05", fill=(230, 230, 230), font=_FONT)
    screen.paste(make_window(omit), window_at)
    wx, wy = window_at
    boxes = {name: (x1 + wx, y1 + wy, x2 + wx, y2 + wy)
             for name, (x1, y1, x2, y2) in BUTTONS.items()}
    rgb = np.asarray(screen)  # read-only, like a captured frame
    return rgb, boxes


def shifted(box: PixelBox, dx: int, dy: int) -> PixelBox:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def test_in_place_hit_on_the_same_screen() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Save"])
    assert snippet.origin == (boxes["Save"][0] - 24, boxes["Save"][1] - 24)
    assert snippet.size == (80 + 48, 30 + 48)
    found = locate(rgb, snippet)
    assert found == Located(boxes["Save"], found.score, (0, 0))
    assert not found.moved
    assert found.score == pytest.approx(1.0)


def test_a_shifted_window_is_relocated_with_the_exact_offset() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Save As"])
    moved, _ = make_screen((WINDOW_AT[0] + 37, WINDOW_AT[1] - 12))
    found = locate(moved, snippet)
    assert found.moved
    assert found.offset == (37, -12)
    assert found.box == shifted(boxes["Save As"], 37, -12)
    assert found.score > 0.99


def test_a_one_pixel_jitter_is_measured_not_ignored() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Cancel"])
    moved, _ = make_screen((WINDOW_AT[0] + 1, WINDOW_AT[1]))
    found = locate(moved, snippet)
    assert found.offset == (1, 0)
    assert found.box == shifted(boxes["Cancel"], 1, 0)


def test_a_removed_element_is_not_on_screen() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Open"])
    gone, _ = make_screen(omit=["Open"])
    with pytest.raises(NotOnScreen, match="best score") as info:
        locate(gone, snippet)
    assert info.value.best_score is not None
    assert info.value.best_score < 0.9
    assert info.value.best_box is not None


def test_similar_buttons_are_not_mistaken_for_each_other() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Save"])
    # "Save" gone and the window moved: "Save As" next door looks alike but must not match.
    gone, _ = make_screen((WINDOW_AT[0] + 37, WINDOW_AT[1] - 12), omit=["Save"])
    with pytest.raises(NotOnScreen):
        locate(gone, snippet)


def with_faint_icon(rgb: np.ndarray, at: tuple[int, int]) -> tuple[np.ndarray, PixelBox]:
    """A copy of the screen with a faint 8x8 icon inside a 12x12 box at ``at``."""
    out = rgb.copy()
    x, y = at
    out[y + 2:y + 10, x + 2:x + 10] = (180, 180, 180)
    return out, (x, y, x + 12, y + 12)


def test_a_small_target_gone_from_matching_surroundings_is_not_on_screen() -> None:
    # The crop is mostly text around a faint icon: without the icon the crop alone still
    # correlates ~0.97, so only checking the target's own box prevents a stale click.
    rgb, _ = make_screen()
    icon_at = (WINDOW_AT[0] + 230, WINDOW_AT[1] + 128)
    screen, box = with_faint_icon(rgb, icon_at)
    snippet = cut(screen, box)
    assert locate(screen, snippet).box == box
    with pytest.raises(NotOnScreen, match=r"surroundings alone score 0\.9") as info:
        locate(rgb, snippet)
    assert info.value.best_score is not None
    assert info.value.best_score < 0.9


def test_a_small_target_is_relocated_with_its_window() -> None:
    rgb, _ = make_screen()
    screen, box = with_faint_icon(rgb, (WINDOW_AT[0] + 230, WINDOW_AT[1] + 128))
    snippet = cut(screen, box)
    moved, _ = with_faint_icon(make_screen((WINDOW_AT[0] + 37, WINDOW_AT[1] - 12))[0],
                               (WINDOW_AT[0] + 267, WINDOW_AT[1] + 116))
    assert locate(moved, snippet).box == shifted(box, 37, -12)


def test_a_plain_target_is_checked_by_its_brightness() -> None:
    # The empty second line of the text area, between two lines of text: no texture of its own.
    rgb, _ = make_screen()
    box = (WINDOW_AT[0] + 100, WINDOW_AT[1] + 88, WINDOW_AT[0] + 140, WINDOW_AT[1] + 104)
    snippet = cut(rgb, box)
    assert locate(rgb, snippet).box == box
    filled = rgb.copy()
    filled[box[1]:box[3], box[0]:box[2]] = 245  # a slight change of shade is tolerated
    assert locate(filled, snippet).box == box
    # Filled in light gray, the crop alone still correlates ~0.99 at the stored place.
    filled[box[1]:box[3], box[0]:box[2]] = 225
    with pytest.raises(NotOnScreen):
        locate(filled, snippet)


def test_identical_buttons_are_found_in_place_when_one_is_at_the_stored_position() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["OK-1"])
    assert locate(rgb, snippet).box == boxes["OK-1"]
    assert locate(rgb, cut(rgb, boxes["OK-2"])).box == boxes["OK-2"]


def test_identical_buttons_that_both_moved_are_ambiguous() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["OK-1"])
    moved, _ = make_screen((WINDOW_AT[0] + 37, WINDOW_AT[1] - 12))
    with pytest.raises(AmbiguousMatch, match="2 places") as info:
        locate(moved, snippet)
    assert set(info.value.places) == {shifted(boxes["OK-1"], 37, -12),
                                      shifted(boxes["OK-2"], 37, -12)}
    assert all(score > 0.99 for score in info.value.scores)


def test_the_stored_position_wins_even_when_another_copy_lands_there() -> None:
    # Documented preference: whatever matches at the stored place is taken as the target.
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["OK-2"])
    moved, _ = make_screen((WINDOW_AT[0], WINDOW_AT[1] + OK_GAP))
    assert locate(moved, snippet).offset == (0, 0)


def test_a_flat_crop_is_refused_at_cut() -> None:
    rgb, _ = make_screen()
    with pytest.raises(FlatSnippet, match="too plain"):
        cut(rgb, (1000, 600, 1100, 660))
    assert issubclass(FlatSnippet, ValueError)


def test_a_crop_at_the_screen_corner_is_clipped_and_still_found() -> None:
    rgb, _ = make_screen()
    snippet = cut(rgb, (2, 2, 80, 22))
    assert snippet.origin == (0, 0)
    assert snippet.size == (80 + 24, 22 + 24)
    assert locate(rgb, snippet).box == (2, 2, 80, 22)


def test_a_clipped_crop_is_relocated_when_its_window_moves() -> None:
    rgb, boxes = make_screen((0, 300))
    snippet = cut(rgb, boxes["Save"])
    assert snippet.origin[0] == 0  # the window's left edge is the screen's
    moved, _ = make_screen((37, 288))
    found = locate(moved, snippet)
    assert found.offset == (37, -12)
    assert found.box == shifted(boxes["Save"], 37, -12)


def test_a_box_past_the_screen_edge_is_clipped() -> None:
    rgb, _ = make_screen()
    snippet = cut(rgb, (-10, -10, 80, 22))
    assert snippet.box == (0, 0, 80, 22)
    with pytest.raises(ValueError, match="no pixels"):
        cut(rgb, (1300, 10, 1400, 40))


def test_a_screen_of_another_size_is_still_searched() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Help"])
    bigger, _ = make_screen((600, 400), size=(1440, 900))
    found = locate(bigger, snippet)
    dx, dy = 600 - WINDOW_AT[0], 400 - WINDOW_AT[1]
    assert found.offset == (dx, dy)
    assert found.box == shifted(boxes["Help"], dx, dy)


def test_a_snippet_larger_than_the_screen_is_not_on_screen() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Save"])
    with pytest.raises(NotOnScreen, match="larger") as info:
        locate(rgb[:50, :100], snippet)
    assert info.value.best_score is None


def test_a_flat_screen_matches_nothing() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Save"])
    blank = np.full((800, 1280, 3), 128, dtype=np.uint8)
    with pytest.raises(NotOnScreen) as info:
        locate(blank, snippet)
    assert info.value.best_score is None or info.value.best_score < 0.9


def test_non_finite_and_noisy_cv2_scores_are_no_match(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Open"])
    gone, _ = make_screen(omit=["Open"])
    real = template.cv2.matchTemplate

    def broken(image: np.ndarray, templ: np.ndarray, method: int) -> np.ndarray:
        scores = real(image, templ, method)
        h, w = scores.shape  # also called on the small window around the stored position
        scores[::7, ::5] = np.nan
        scores[1, 1] = np.inf
        scores[3, 3] = 1e30  # finite but absurd: the exact check must reject it
        scores[min(5, h - 1), min(9, w - 1)] = 0.999  # plausible, on a spot that does not match
        return scores

    monkeypatch.setattr(template.cv2, "matchTemplate", broken)
    with pytest.raises(NotOnScreen) as info:
        locate(gone, snippet)
    assert info.value.best_score is not None
    assert info.value.best_score < 0.9


def test_inputs_are_checked() -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Save"])
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        locate(rgb.astype(np.float32), snippet)
    with pytest.raises(ValueError, match="threshold"):
        locate(rgb, snippet, threshold=0.0)
    with pytest.raises(ValueError, match="not inside"):
        Snippet(snippet.rgb, (0, 0, 10, 10), snippet.origin)


def test_the_snippet_is_a_frozen_copy() -> None:
    rgb, boxes = make_screen()
    screen = rgb.copy()
    snippet = cut(screen, boxes["Save"])
    screen[:] = 0
    assert snippet.rgb.any()
    assert not snippet.rgb.flags.writeable


def test_the_search_fails_closed_when_too_many_candidates_fail_the_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rgb, boxes = make_screen()
    snippet = cut(rgb, boxes["Open"])
    gone, _ = make_screen(omit=["Open"])

    def everywhere(image: np.ndarray, templ: np.ndarray, method: int) -> np.ndarray:
        h, w = image.shape[0] - templ.shape[0] + 1, image.shape[1] - templ.shape[1] + 1
        return np.full((h, w), 0.95, dtype=np.float32)

    monkeypatch.setattr(template.cv2, "matchTemplate", everywhere)
    monkeypatch.setattr(template, "_MAX_REJECTS", 5)
    with pytest.raises(NotOnScreen, match="gave up after 5"):
        locate(gone, snippet)
