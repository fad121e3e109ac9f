"""The report as a browser draws it: headless Chromium renders the page to a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.agent.reports.html import write_report
from tests.helpers.browser import chromium, pixels_near, render
from tests.test_report import make_suite

SIZE = (1280, 2000)
PASS_GREEN = (0x1A, 0x7F, 0x37)   # --pass in report.css: the PASSED badges
FAIL_RED = (0xCF, 0x22, 0x2E)     # --fail: the FAILED badges and the failing step's frame
MARKER = (0xE5, 0x00, 0x4F)       # the click marker drawn over the failing step's screenshot
BOX = (0xFF, 0x8C, 0x00)          # the target box's outline


@pytest.mark.skipif(chromium() is None,
                    reason="no chromium binary (apt-get install chromium) to render the report")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = write_report(tmp_path / "report", make_suite(tmp_path))
    rgb = render(page, tmp_path / "render.png", SIZE, tmp_path)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # not a blank page
    for colour in (PASS_GREEN, FAIL_RED, MARKER, BOX):
        assert pixels_near(rgb, colour) > 30, colour
