"""Headless Chromium for the tests that look at a report as a browser draws it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image


def chromium() -> str | None:
    """The Chromium binary, when one is installed."""
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


def render(page: Path, png: Path, size: tuple[int, int], work: Path, *,
           fragment: str = "") -> np.ndarray:
    """Draw ``page`` (scrolled to ``#fragment`` when given) at ``size`` into ``png`` and return
    its RGB pixels."""
    binary = chromium()
    assert binary is not None, "no chromium binary (apt-get install chromium)"
    argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={work / 'profile'}",
            f"--window-size={size[0]},{size[1]}", f"--screenshot={png}",
            page.as_uri() + (f"#{fragment}" if fragment else "")]
    # A private HOME keeps Chromium's caches and crash reports out of the user's.
    env = {**os.environ, "HOME": str(work)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=work,
                          check=False)
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
    with Image.open(png) as image:
        assert image.size == size
        return np.asarray(image.convert("RGB"))


def pixels_near(rgb: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels lie within ``tolerance`` of ``colour`` in every channel."""
    return int((np.abs(rgb.astype(int) - colour).max(axis=2) <= tolerance).sum())
