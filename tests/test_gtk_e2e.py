"""Real GTK apps under Xvfb at 1920x1080: task files written as a new user would (galculator's
symbol keys, zenity's question and entry dialogs, Mousepad's Save dialog, gnumeric's cells and
menus), grounded on the accessibility tree; a
zenity dialog's Yes and No read by OCR; incremental reads equal full ones on a recorded
sequence; and ``deskpilot inspect`` on the live screen."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deskpilot.grounding.capture import MssScreen
from deskpilot.grounding.ocr import RapidOcrReader
from deskpilot.grounding.textmatch import find_text
from deskpilot.grounding.xvfb import display_env, launched, run_display

ROOT = Path(__file__).parent.parent
GTK = ROOT / "tests" / "data" / "gtk"
APPS = ("Xvfb", "xdotool", "dbus-daemon", "galculator", "zenity", "mousepad", "gnumeric", "xcalc",
        "xedit", "xmessage")
pytestmark = [
    pytest.mark.display,
    pytest.mark.skipif(not all(shutil.which(p) for p in APPS),
                       reason=f"needs {', '.join(APPS)} (make test-deps installs them)"),
]


def test_gtk_task_files_pass_grounded_on_the_accessibility_tree(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS")}
    done = subprocess.run(
        [sys.executable, "-P", "-m", "deskpilot", "run", *sorted(map(str, GTK.glob("*.yaml"))),
         "--headless", "--xvfb", "--screen-size", "1920x1080", "--cache", "off",
         "--runs-dir", str(tmp_path / "runs"), "--summary", str(tmp_path / "summary.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    clicks = []
    for task in summary["tasks"]:
        steps = [json.loads(line) for line in
                 (Path(task["run_dir"]) / "steps.jsonl").read_text().splitlines()]
        clicks += [s for s in steps if s["kind"] == "click"]
    # Every click written as text or a name was grounded on the tree; one is a point.
    assert len(clicks) == 12
    assert {s["source"] for s in clicks} == {"a11y", "coords"}, clicks
    assert sum(s["source"] == "a11y" for s in clicks) == 11
    assert "found toggle button '*'" in done.stdout  # a symbol key OCR does not read


@pytest.fixture(scope="module")
def display() -> object:
    with run_display(new=True, size=(1920, 1080)) as (name, _):
        yield name


def grab() -> np.ndarray:
    with MssScreen(1) as screen:
        return screen.grab().rgb


def test_zenity_yes_and_no_are_read_on_a_full_1080p_screen(display: str) -> None:
    argv = ["zenity", "--question", "--text", "Overwrite the file report.txt?"]
    with launched(argv, display, window="Question"):
        time.sleep(1.0)  # mapped before painted; no window manager says when
        lines = RapidOcrReader(incremental=False).read(grab())
    assert find_text(lines, "No").text == "No"
    assert find_text(lines, "Yes").text == "Yes"


def test_zenity_yes_and_no_are_read_on_a_full_4k_screen() -> None:
    # Small text on a screen four times larger: the bands grow with the width, and the
    # segments cut away the empty screen around the dialog.
    argv = ["zenity", "--question", "--text", "Overwrite the file report.txt?"]
    with run_display(new=True, size=(3840, 2160)) as (display, _), \
            launched(argv, display, window="Question"):
        time.sleep(1.0)
        lines = RapidOcrReader(incremental=False).read(grab())
    assert find_text(lines, "No").text == "No"
    assert find_text(lines, "Yes").text == "Yes"
    assert find_text(lines, "Overwrite the file report.txt?").how == "exact"


def _key(display: str, window: str, *keys: str) -> None:
    subprocess.run(["xdotool", "search", "--name", window, "windowfocus", "key", *keys],
                   env=display_env(display), check=False, timeout=10)
    time.sleep(0.4)


def test_incremental_reads_equal_full_reads_on_a_recorded_sequence(display: str,
                                                                   tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Meeting notes\n", encoding="utf-8")
    frames = []
    with launched(["xcalc", "-geometry", "+300+200"], display, window="Calculator"), \
            launched(["xedit", "-geometry", "600x300+900+200", str(notes)], display,
                     window="xedit"):
        time.sleep(0.5)
        frames.append(grab())
        for key in ("7", "8", "9"):  # xcalc's display changes; xedit beside it does not
            _key(display, "Calculator", key)
            frames.append(grab())
        _key(display, "xedit", "End", "B", "u", "y")  # xedit's text changes; xcalc's does not
        frames.append(grab())
        with launched(["xmessage", "-geometry", "+300+700", "Backup finished"], display,
                      window="xmessage"):
            time.sleep(0.5)
            frames.append(grab())  # a window appears where the screen was empty
        time.sleep(0.3)
        frames.append(grab())  # ... and goes away
    same = [i for i, (a, b) in enumerate(itertools.pairwise(frames)) if np.array_equal(a, b)]
    assert not same, f"frames {same} did not change the screen"
    kept, fresh = RapidOcrReader(), RapidOcrReader(incremental=False)
    for rgb in frames:
        assert kept.read(rgb) == fresh.read(rgb)
    assert find_text(kept.read(frames[-2]), "Backup finished").text == "Backup finished"
    # Unchanged bands, unchanged segments of changed bands, and seen line crops were reused.
    assert kept.stats.bands_reused > 0 and kept.stats.segments_reused > 0
    assert kept.stats.crops_reused > 0
    assert fresh.stats.bands_reused == fresh.stats.segments_reused == fresh.stats.crops_reused == 0


def test_inspect_lists_accessible_elements_and_ocr_text_with_their_steps(
        display: str, tmp_path: Path) -> None:
    def inspect(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-P", "-m", "deskpilot", "inspect", *args],
                              env=display_env(display), capture_output=True, text=True,
                              timeout=120, check=False)

    with launched(["galculator"], display, window="galculator"), \
            launched(["xcalc", "-geometry", "+900+100"], display, window="Calculator"):
        time.sleep(1.0)
        gtk = inspect("--window", "galculator", "--out", str(tmp_path / "inspect"))
        x11 = inspect("--window", "xcalc", "--json")  # no tree: found by its X11 class
    assert gtk.returncode == 0, gtk.stdout + gtk.stderr
    assert 'click: {name: "*", role: toggle button}' in gtk.stdout
    assert (tmp_path / "inspect" / "overlay.png").stat().st_size > 0
    assert "toggle button" in (tmp_path / "inspect" / "index.html").read_text()
    assert x11.returncode == 0, x11.stdout + x11.stderr
    targets = json.loads(x11.stdout[:x11.stdout.rindex("]") + 1])
    assert {t["source"] for t in targets} == {"ocr"}
    assert 'click: "AC"' in {t["step"] for t in targets}
    assert all(t["box"][0] >= 900 for t in targets)  # nothing of galculator's
