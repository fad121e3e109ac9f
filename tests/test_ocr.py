"""The OCR reader: rapidocr on rendered text and on real X apps, regions, silence, the fake."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from deskpilot.grounding.capture import MssScreen
from deskpilot.grounding.ocr import (
    GUTTER,
    SEGMENT_CONTEXT,
    FakeReader,
    OcrError,
    PixelBox,
    RapidOcrReader,
    TextBox,
    TextLine,
    TextReader,
    box_centre_inside,
    clip_region,
    context_crop,
    quad_to_box,
    segments,
)
from deskpilot.grounding.textmatch import find_text
from deskpilot.grounding.xvfb import launched

PAGE_SIZE = (640, 200)
TEXTS = {"Hello deskpilot": (40, 30), "Open Save": (300, 120)}  # text -> where it is drawn
SLACK = 12  # pixels an OCR box may reach beyond the ink (the detector pads its boxes)


@pytest.fixture(scope="module")
def reader() -> RapidOcrReader:
    """One engine for the module: building it loads the models."""
    return RapidOcrReader()


@pytest.fixture(scope="module")
def page() -> tuple[np.ndarray, dict[str, PixelBox]]:
    """Black text on white, read-only like a captured frame, and each text's ink box."""
    image = Image.new("RGB", PAGE_SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    ink = {}
    for text, at in TEXTS.items():
        draw.text(at, text, fill="black", font=font)
        x1, y1, x2, y2 = draw.textbbox(at, text, font=font)
        ink[text] = (int(x1), int(y1), int(x2), int(y2))
    return np.asarray(image), ink


@pytest.fixture(scope="module")
def page_lines(reader: RapidOcrReader, page: tuple[np.ndarray, dict[str, PixelBox]]
               ) -> list[TextLine]:
    """The page read once by the real engine."""
    return reader.read(page[0])


def encloses(outer: PixelBox, inner: PixelBox, slack: int = SLACK) -> bool:
    """Whether ``outer`` contains ``inner`` and is at most ``slack`` pixels larger each side."""
    return all(0 <= d <= slack for d in (inner[0] - outer[0], inner[1] - outer[1],
                                         outer[2] - inner[2], outer[3] - inner[3]))


def test_rapidocr_reader_is_a_text_reader(reader: RapidOcrReader) -> None:
    assert isinstance(reader, TextReader)
    assert isinstance(FakeReader([]), TextReader)
    assert "rapidocr" in reader.name


def test_reads_rendered_text_where_it_was_drawn(
        page: tuple[np.ndarray, dict[str, PixelBox]], page_lines: list[TextLine]) -> None:
    _, ink = page
    assert [line.text for line in page_lines] == list(TEXTS)
    for line in page_lines:
        assert encloses(line.box, ink[line.text]), (line.box, ink[line.text])
        assert 0.9 < line.score <= 1
    words = page_lines[1].words
    assert [w.text for w in words] == ["Open", "Save"]
    assert words[0].box[2] <= words[1].box[0]  # left to right, not overlapping
    assert all(encloses(page_lines[1].box, w.box, slack=100) for w in words)


def test_find_text_on_rendered_text(page: tuple[np.ndarray, dict[str, PixelBox]],
                                    page_lines: list[TextLine]) -> None:
    match = find_text(page_lines, "Save")
    _, ink = page
    x1, y1, x2, y2 = ink["Open Save"]
    assert (match.text, match.how) == ("Save", "exact")
    assert (x1 + x2) / 2 < match.box[0] and match.box[2] <= x2 + SLACK
    assert y1 - SLACK <= match.box[1] and match.box[3] <= y2 + SLACK


def test_region_read_returns_full_image_coordinates(
        reader: RapidOcrReader, page: tuple[np.ndarray, dict[str, PixelBox]],
        page_lines: list[TextLine]) -> None:
    rgb, ink = page
    region = (280, 100, 640, 200)
    lines = reader.read(rgb, region)
    assert [line.text for line in lines] == ["Open Save"]
    assert encloses(lines[0].box, ink["Open Save"], slack=2 * SLACK)
    # The crop is read at another scale, so boxes agree with the full read within a few pixels.
    full = page_lines[1].words[1].box
    assert max(abs(a - b) for a, b in zip(lines[0].words[1].box, full, strict=True)) <= 8


def test_region_beyond_the_image_is_clipped(reader: RapidOcrReader,
                                           page: tuple[np.ndarray, dict[str, PixelBox]]) -> None:
    lines = reader.read(page[0], (280, 100, 5000, 5000))
    assert [line.text for line in lines] == ["Open Save"]


def test_reads_a_non_contiguous_view(reader: RapidOcrReader,
                                     page: tuple[np.ndarray, dict[str, PixelBox]]) -> None:
    rgb, ink = page
    wide = np.full((PAGE_SIZE[1] + 20, PAGE_SIZE[0] + 40, 3), 255, np.uint8)
    wide[10:-10, 20:-20] = rgb
    view = wide[10:-10, 20:-20]
    assert not view.flags.c_contiguous
    lines = reader.read(view, (0, 0, 280, 100))
    assert [line.text for line in lines] == ["Hello deskpilot"]
    assert encloses(lines[0].box, ink["Hello deskpilot"], slack=2 * SLACK)


def test_blank_image_reads_nothing(reader: RapidOcrReader) -> None:
    assert reader.read(np.full((120, 200, 3), 255, np.uint8)) == []


def test_reading_prints_nothing(capfd: pytest.CaptureFixture[str],
                                page: tuple[np.ndarray, dict[str, PixelBox]]) -> None:
    # A fresh reader: building the engine is where rapidocr logs which models it loads, and
    # a blank image is where it warns that it found no text.
    reader = RapidOcrReader()
    assert reader.read(page[0])
    assert reader.read(np.full((60, 60, 3), 255, np.uint8)) == []
    assert capfd.readouterr() == ("", "")
    # Its records go through Python logging (pytest's handler would hide a stray print).
    rapidocr_log = logging.getLogger("RapidOCR")
    assert rapidocr_log.handlers == [] and rapidocr_log.propagate


def test_missing_models_raise_ocr_error(tmp_path: Path) -> None:
    with pytest.raises(OcrError, match="missing") as info:
        # Something drawn: a one-colour image holds no text and needs no engine to say so.
        image = np.zeros((40, 40, 3), np.uint8)
        image[10:30, 5:35] = 255
        RapidOcrReader(model_dir=tmp_path).read(image)
    assert isinstance(info.value, RuntimeError)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("region", [(50, 50, 50, 80), (10, 10, 5, 20), (500, 0, 900, 40),
                                    (-30, -30, 0, 0)])
def test_empty_region_is_refused(region: PixelBox) -> None:
    with pytest.raises(ValueError, match="empty"):
        RapidOcrReader().read(np.zeros((100, 200, 3), np.uint8), region)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros((10, 10, 3), np.float32)])
def test_bad_image_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        RapidOcrReader().read(bad)


def test_clip_region() -> None:
    assert clip_region((-5, 10, 300, 90), 200, 100) == (0, 10, 200, 90)
    assert clip_region((1, 2, 3, 4), 200, 100) == (1, 2, 3, 4)


@pytest.mark.parametrize("region", [(580, 480, 630, 510), (0, 0, 10, 10), (1900, 1070, 1920, 1080),
                                    (380, 130, 646, 564), (0, 0, 1920, 1080)])
def test_context_crop_holds_the_region_with_a_margin_in_32s(region: PixelBox) -> None:
    x1, y1, x2, y2 = crop = context_crop(region, 1920, 1080)
    assert 0 <= x1 <= region[0] and 0 <= y1 <= region[1]
    assert region[2] <= x2 <= 1920 and region[3] <= y2 <= 1080
    assert (x2 - x1) % 32 == 0 and (y2 - y1) % 32 in (0, 1080 % 32), crop
    assert min(x2 - x1, y2 - y1) >= 128
    if region == (580, 480, 630, 510):
        assert crop == (541, 431, 669, 559)  # centred, 128 a side


def test_quad_to_box_rounds_outward_and_clips() -> None:
    quad = [[10.6, 20.2], [50.1, 19.9], [50.4, 40.01], [10.9, 40.5]]
    assert quad_to_box(quad, 100, 100) == (10, 19, 51, 41)
    assert quad_to_box([[-2.5, 5], [120, 5], [120, 9], [-2.5, 9]], 100, 100) == (0, 5, 100, 9)


def test_fake_reader_filters_by_region_and_records_calls() -> None:
    save = TextLine("Save", (10, 10, 40, 20), 0.9, (TextBox("Save", (10, 10, 40, 20), 0.9),))
    load = TextLine("Load", (100, 10, 140, 20), 0.8)
    fake = FakeReader([save, load], name="scripted")
    rgb = np.zeros((50, 200, 3), np.uint8)
    assert fake.name == "scripted"
    assert fake.read(rgb) == [save, load]
    assert fake.read(rgb, (0, 0, 60, 500)) == [save]
    assert fake.read(rgb, (110, 0, 130, 50)) == [load]
    assert fake.calls == [None, (0, 0, 60, 50), (110, 0, 130, 50)]
    with pytest.raises(ValueError, match="empty"):
        fake.read(rgb, (300, 0, 400, 50))


# --- on a real X display ---------------------------------------------------------------------

CALC_AT = (60, 60)
EDIT_AT = (600, 60)
EDIT_SIZE = (600, 400)


@pytest.fixture(scope="module")
def apps_screen(display: str, reader: RapidOcrReader) -> Iterator[list[TextLine]]:
    """xcalc and xedit on the session's display, read once."""
    with tempfile.TemporaryDirectory(prefix="deskpilot-ocr-") as tmp:
        notes = Path(tmp) / "notes.txt"
        notes.write_text("Meeting notes\n", encoding="utf-8")
        x, y = EDIT_AT
        with launched(["xcalc", "-geometry", f"+{CALC_AT[0]}+{CALC_AT[1]}"], display,
                      window="Calculator"), \
             launched(["xedit", "-geometry", f"{EDIT_SIZE[0]}x{EDIT_SIZE[1]}+{x}+{y}",
                       str(notes)], display, window="xedit"):
            time.sleep(0.5)  # mapped is not yet painted, and there is no window manager to ask
            screen = MssScreen(1)
            try:
                rgb = screen.grab().rgb
            finally:
                screen.close()
            yield reader.read(rgb)


@pytest.mark.display
def test_save_lands_on_xedits_save_button(apps_screen: list[TextLine]) -> None:
    match = find_text(apps_screen, "Save")
    cx, cy = (match.box[0] + match.box[2]) / 2, (match.box[1] + match.box[3]) / 2
    # The command bar is the top row of xedit: Quit, Save, Load, each about 40 pixels wide.
    assert EDIT_AT[0] + 40 < cx < EDIT_AT[0] + 100, match
    assert EDIT_AT[1] < cy < EDIT_AT[1] + 22, match


@pytest.mark.display
def test_ac_lands_on_xcalcs_ac_button(apps_screen: list[TextLine]) -> None:
    match = find_text(apps_screen, "AC")
    cx, cy = (match.box[0] + match.box[2]) / 2, (match.box[1] + match.box[3]) / 2
    # AC is the last button of xcalc's first row, under the display (~226 pixels wide window).
    assert CALC_AT[0] + 180 < cx < CALC_AT[0] + 226, match
    assert CALC_AT[1] + 60 < cy < CALC_AT[1] + 95, match


def test_a_band_splits_into_segments_at_wide_one_colour_gutters() -> None:
    band = np.zeros((64, 1000, 3), np.uint8)
    band[10:20, 100:150] = 255           # a word
    band[10:20, 150 + GUTTER - 1:260] = 255  # a gap one column short of a gutter: same segment
    band[30:40, 600:700] = (20, 200, 20)  # far to the right: a segment of its own
    found = segments(band)
    assert len(found) == 2
    left, right = found
    assert left.x0 <= 100 - SEGMENT_CONTEXT and left.x1 >= 260 + SEGMENT_CONTEXT
    assert right.x0 <= 600 - SEGMENT_CONTEXT and right.x1 >= 700 + SEGMENT_CONTEXT
    assert left.x1 <= 600 and right.x0 >= 260  # contexts hold only gutter pixels
    for segment in found:
        assert (segment.x1 - segment.x0) % 32 == 0 and 0 <= segment.x0 < segment.x1 <= 1000
    # Every column is owned by exactly one segment, split in the middle of the gutter.
    assert (left.own0, left.own1, right.own0, right.own1) == (0, 430, 430, 1000)


def test_a_one_colour_band_has_no_segments_and_is_not_read(reader: RapidOcrReader) -> None:
    assert segments(np.full((64, 500, 3), 37, np.uint8)) == []
    columns = np.zeros((64, 500, 3), np.uint8)
    columns[:, ::2] = 255  # every column one colour top to bottom: stripes, no text
    assert segments(columns) == []
    before = reader.stats.segments_read
    assert reader.read(np.full((600, 800, 3), 200, np.uint8)) == []
    assert reader.stats.segments_read == before


def test_a_segment_at_the_right_edge_is_widened_leftwards() -> None:
    band = np.zeros((64, 300, 3), np.uint8)
    band[10:20, 290:299] = 255
    (only,) = segments(band)
    assert only.x1 == 300 and (only.x1 - only.x0) % 32 == 0 and only.x0 <= 290 - SEGMENT_CONTEXT


def test_a_large_region_is_answered_from_a_full_read(
        page: tuple[np.ndarray, dict[str, PixelBox]]) -> None:
    rgb = page[0]
    reader = RapidOcrReader()
    region = (0, 0, 600, 180)  # most of the page: a whole window, say
    lines = reader.read(rgb, region)
    assert reader.stats.bands_read > 0  # read as the screen is, not as one large crop
    assert lines == [line for line in RapidOcrReader().read(rgb)
                     if box_centre_inside(line.box, region)]
    assert {line.text for line in lines} == set(TEXTS)
    small = reader.read(rgb, (20, 20, 200, 80))  # a small one is still a crop of its own
    assert [line.text for line in small] == ["Hello deskpilot"]
