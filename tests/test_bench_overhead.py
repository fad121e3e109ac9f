"""The overhead benchmark's worker runs end to end and reports every phase (no speed asserted)."""

from __future__ import annotations

import math
import shutil

import pytest

from deskpilot.agent.bench.overhead import NAIVE_PHASES, OURS_PHASES, measure_size

pytestmark = [
    pytest.mark.display,
    pytest.mark.skipif(any(shutil.which(tool) is None for tool in ("Xvfb", "xcalc", "xdotool")),
                       reason="needs Xvfb, xcalc and xdotool (apt-get install xvfb x11-apps "
                              "xdotool)"),
]


def test_one_size_worker_reports_all_phases() -> None:
    # The worker starts its own Xvfb in a fresh process: pyautogui in this one is untouched.
    figures = measure_size(1280, 800, steps=3)
    ours, naive = figures["ours"], figures["naive"]
    for phase in OURS_PHASES:
        assert ours[f"{phase}_ms"] >= 0
    for phase in NAIVE_PHASES:
        assert naive[f"{phase}_ms"] >= 0
    for value in (ours["total_ms"], naive["total_ms"], naive["total_no_pause_ms"]):
        assert math.isfinite(value)
        assert value > 0
    assert figures["naive_pause_ms"] == pytest.approx(100.0)
    # The naive click alone sleeps pyautogui's 0.1 s pause, which ours never pays.
    assert naive["click_ms"] >= 100.0
    assert figures["ratio"] > 1
    assert figures["steps"] == 3
    assert figures["image_tokens"] <= 3600
    assert naive["capture_path"]
