"""The report as a browser draws it: headless Chromium renders the page to a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.agent.reports.html import write_report
from tests.helpers.browser import chromium, pixels_near, render
from tests.test_report import make_suite, visual_suite

PASS_GREEN = (0x1A, 0x7F, 0x37)   # --pass in report.css: the PASSED badges
FAIL_RED = (0xCF, 0x22, 0x2E)     # --fail: the FAILED badges and the failing step's frame
FAIL_BG = (0xFF, 0xEB, 0xE9)      # --fail-bg: the failures summary and the failing step
MARKER = (0xE5, 0x00, 0x4F)       # the click marker, in crops and over full screenshots
BOX = (0xFF, 0x8C, 0x00)          # the target box's outline
CANDIDATE = (0x09, 0x69, 0xDA)    # other OCR candidates' outlines
VIEWER_BG = (0x0D, 0x11, 0x17)    # the full-size viewer's backdrop (over the page)

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="no chromium binary (apt-get install chromium) to render the report")


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = write_report(tmp_path / "report", make_suite(tmp_path))
    rgb = render(page, tmp_path / "render.png", (1280, 2400), tmp_path)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # not a blank page
    for colour in (PASS_GREEN, FAIL_RED, MARKER, BOX, CANDIDATE):
        assert pixels_near(rgb, colour) > 30, colour


@needs_chromium
def test_the_first_screen_at_1080p_shows_what_failed(tmp_path: Path) -> None:
    page = write_report(tmp_path / "report", make_suite(tmp_path))
    rgb = render(page, tmp_path / "first.png", (1920, 1080), tmp_path)
    # The failures summary fills a good part of the first screen, with the failed step's
    # crop (its box, click and candidate drawn big enough to see) in it.
    assert pixels_near(rgb, FAIL_BG, tolerance=4) > 60_000
    for colour in (BOX, MARKER, CANDIDATE):
        assert pixels_near(rgb, colour, tolerance=40) > 30, colour


@needs_chromium
def test_a_thumbnail_opens_the_full_screenshot_in_a_viewer(tmp_path: Path) -> None:
    page = write_report(tmp_path / "report", make_suite(tmp_path))
    closed = render(page, tmp_path / "closed.png", (1280, 800), tmp_path)
    assert pixels_near(closed, VIEWER_BG, tolerance=6) < 1000  # hidden until linked to
    rgb = render(page, tmp_path / "viewer.png", (1280, 800), tmp_path, fragment="task-2-shot-4")
    assert pixels_near(rgb, VIEWER_BG, tolerance=6) > 50_000  # the backdrop covers the page
    assert pixels_near(rgb, BOX, tolerance=30) > 30 and pixels_near(rgb, MARKER) > 30


@needs_chromium
def test_a_failed_comparison_renders_three_panels(tmp_path: Path) -> None:
    page = write_report(tmp_path / "report", visual_suite(tmp_path))
    rgb = render(page, tmp_path / "visual.png", (1920, 1400), tmp_path)
    box_columns = np.flatnonzero((np.abs(rgb.astype(int) - BOX).max(axis=2) <= 40).any(axis=0))
    # The changed area is boxed in three panels side by side: three separate runs of columns.
    runs = 1 + int((np.diff(box_columns) > 40).sum()) if box_columns.size else 0
    assert runs >= 3, box_columns
