"""The report as a browser draws it: headless Chromium renders the page to a PNG."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deskpilot.agent.reports.html import write_report
from tests.test_report import make_suite

SIZE = (1280, 2000)
PASS_GREEN = (0x1A, 0x7F, 0x37)   # --pass in report.css: the PASSED badges
FAIL_RED = (0xCF, 0x22, 0x2E)     # --fail: the FAILED badges and the failing step's frame
MARKER = (0xE5, 0x00, 0x4F)       # the click marker drawn over the failing step's screenshot
BOX = (0xFF, 0x8C, 0x00)          # the target box's outline


def _chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


def _pixels_near(rgb: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(rgb.astype(int) - colour).max(axis=2) <= tolerance).sum())


@pytest.mark.skipif(_chromium() is None,
                    reason="no chromium binary (apt-get install chromium) to render the report")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = write_report(tmp_path / "report", make_suite(tmp_path))
    png = tmp_path / "render.png"
    argv = [str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={SIZE[0]},{SIZE[1]}", f"--screenshot={png}", page.as_uri()]
    # A private HOME keeps Chromium's caches and crash reports out of the user's.
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
    with Image.open(png) as image:
        assert image.size == SIZE
        rgb = np.asarray(image.convert("RGB"))
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # not a blank page
    for colour in (PASS_GREEN, FAIL_RED, MARKER, BOX):
        assert _pixels_near(rgb, colour) > 30, colour
