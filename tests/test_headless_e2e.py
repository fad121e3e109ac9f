"""Headless runs end to end: the real CLI, its own Xvfb, real xcalc and xedit, real OCR.

Each run is a subprocess, as CI would start it: pyautogui binds to the first display it sees,
and every run here starts a display of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
pytestmark = [
    pytest.mark.display,
    pytest.mark.skipif(not all(shutil.which(p) for p in ("Xvfb", "xcalc", "xedit", "xdotool")),
                       reason="needs Xvfb, xcalc, xedit and xdotool (make deps)"),
]


def deskpilot(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    return subprocess.run([sys.executable, "-P", "-m", "deskpilot", "run", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
                          check=False)


def steps_of(summary: Path, task: int = 0) -> list[dict[str, object]]:
    run_dir = Path(json.loads(summary.read_text())["tasks"][task]["run_dir"])
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


XCALC_78 = """\
name: {name}
setup:
  launch:
    - command: xcalc -geometry {geometry}
      wait_for: {{window: Calculator}}
steps:
  - click: "7"
  - click: "8"
  - expect: {{text: "78", region: [0, 0, 1280, 800]}}
"""


def test_examples_pass_and_leave_junit_summary_and_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = deskpilot(*sorted((ROOT / "examples").glob("*.yaml")), "--headless", "--xvfb",
                     "--junit", out / "junit.xml", "--summary", out / "summary.json",
                     "--report", out / "report", "--cache-dir", out / "cache",
                     "--runs-dir", out / "runs")
    assert done.returncode == 0, done.stdout + done.stderr
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    assert json.loads((out / "summary.json").read_text())["passed"] is True
    html = (out / "report" / "index.html").read_text()
    assert "xcalc adds 7 and 8" in html and "data:image/jpeg;base64," in html
    assert "2 passed, 0 failed, 0 errors" in done.stdout
    # Then as `make demo` does: again from the verified cache alone, which must not refuse.
    again = deskpilot(*sorted((ROOT / "examples").glob("*.yaml")), "--headless", "--xvfb",
                      "--cache", "read-only", "--cache-dir", out / "cache",
                      "--runs-dir", out / "runs")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("via cache") >= 4, again.stdout


def test_failing_expectation_exits_1_with_a_junit_failure_and_screenshot(tmp_path: Path
                                                                          ) -> None:
    task = tmp_path / "wrong.yaml"
    task.write_text("name: xcalc adds wrongly\n"
                    "setup:\n  launch:\n    - command: xcalc -geometry +400+150\n"
                    "      wait_for: {window: Calculator}\n"
                    "steps:\n  - click: '7'\n  - expect: {text: '16', timeout_s: 1}\n"
                    "  - click: '8'\n")
    junit = tmp_path / "junit.xml"
    done = deskpilot(task, "--headless", "--xvfb", "--junit", junit, "--cache", "off",
                     "--runs-dir", tmp_path / "runs")
    assert done.returncode == 1, done.stdout + done.stderr
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message", "").startswith("step 2 (line 8): expect: {text: '16'")
    shots = [w for w in (failure.text or "").split() if w.endswith(".png")]
    assert shots and all(Path(s).is_file() for s in shots)
    assert "FAIL  2. expect" in done.stdout and "  3. click" not in done.stdout


def test_cache_relocates_after_the_window_moved_and_refuses_when_it_is_gone(
        tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, moved = tmp_path / "first.yaml", tmp_path / "moved.yaml"
    first.write_text(XCALC_78.format(name="keys", geometry="+400+150"))
    moved.write_text(XCALC_78.format(name="keys", geometry="+530+90"))
    common = ("--headless", "--xvfb", "--cache-dir", cache, "--runs-dir", tmp_path / "runs")

    done = deskpilot(first, *common, "--summary", tmp_path / "s1.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [s["source"] for s in steps_of(tmp_path / "s1.json")][:2] == ["ocr", "ocr"]

    done = deskpilot(moved, *common, "--cache", "read-only", "--summary", tmp_path / "s2.json")
    assert done.returncode == 0, done.stdout + done.stderr
    clicks = steps_of(tmp_path / "s2.json")[:2]
    assert [s["source"] for s in clicks] == ["cache", "cache"]
    assert all("relocated by (130, -60)" in str(s["message"]) for s in clicks)

    gone = tmp_path / "gone.yaml"  # same task and targets, but the calculator is not there
    gone.write_text("name: keys\nsetup:\n  launch:\n"
                    "    - command: xedit -geometry 700x400+300+120\n"
                    "      wait_for: {window: xedit}\n"
                    "steps:\n  - click: '7'\n")
    done = deskpilot(gone, *common, "--cache", "read-only", "--summary", tmp_path / "s3.json")
    assert done.returncode == 1, done.stdout + done.stderr
    step = steps_of(tmp_path / "s3.json")[0]
    assert "refusing to click" in str(step["message"]) and step["point"] is None


def test_stale_model_target_falls_back_to_the_model_in_read_write_mode(tmp_path: Path
                                                                       ) -> None:
    # The model (scripted) first locates xcalc's "7" key; later the same target is asked for
    # on xedit, where the cached crop is absent: the model is asked again and its answer used.
    replies = tmp_path / "replies.jsonl"
    replies.write_text(
        json.dumps({"answer": "[0.3617, 0.535, 0.3719, 0.5563]"})  # native grounding answers
        + "\n"
        + json.dumps({"answer": "[0.2664, 0.15, 0.2898, 0.175]"})
        + "\n")
    calc, edit = tmp_path / "calc.yaml", tmp_path / "edit.yaml"
    calc.write_text("name: main button\nsetup:\n  launch:\n"
                    "    - command: xcalc -geometry +400+150\n"
                    "      wait_for: {window: Calculator}\n"
                    "steps:\n  - click: {target: the main button}\n"
                    "  - expect: {text: '7', region: [400, 150, 640, 200]}\n")
    edit.write_text("name: main button\nsetup:\n  launch:\n"
                    "    - command: xedit -geometry 700x400+300+120 ${work_dir}/n.txt\n"
                    "      wait_for: {window: xedit}\n"
                    "steps:\n  - click: {target: the main button}\n"
                    "  - expect: {text: No changes need to be saved}\n")
    common = ("--headless", "--xvfb", "--cache-dir", tmp_path / "cache",
              "--runs-dir", tmp_path / "runs", "--replay", replies)
    done = deskpilot(calc, edit, *common, "--summary", tmp_path / "s.json")
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = steps_of(tmp_path / "s.json", 0)[0], steps_of(tmp_path / "s.json", 1)[0]
    assert first["source"] == "model" and second["source"] == "model"
    assert "stale" in str(second["message"])


def test_a_label_not_on_the_screen_leaves_its_screenshot_everywhere(tmp_path: Path) -> None:
    """The commonest failure: OCR cannot find the text. The step keeps the screen it searched
    with the closest texts and their boxes; JUnit attaches it; the report outlines them; the
    console says where the report is and how to open it."""
    task = tmp_path / "missing.yaml"
    task.write_text("name: xcalc has no such key\n"
                    "setup:\n  launch:\n    - command: xcalc -geometry +400+150\n"
                    "      wait_for: {window: Calculator}\n"
                    # xcalc may map its window before it draws the keys: wait for one.
                    "steps:\n  - wait_for: {text: AC}\n  - click: NoSuchLabel\n")
    out = tmp_path / "out"
    done = deskpilot(task, "--headless", "--xvfb", "--cache", "off", "--junit",
                     out / "junit.xml", "--summary", out / "summary.json", "--report",
                     out / "report", "--runs-dir", tmp_path / "runs")
    assert done.returncode == 1, done.stdout + done.stderr
    ready, step = steps_of(out / "summary.json")
    assert ready["passed"] is True, ready["message"]
    run_dir = Path(json.loads((out / "summary.json").read_text())["tasks"][0]["run_dir"])
    assert step["passed"] is False and step["screenshot"]
    shot = (run_dir / str(step["screenshot"])).absolute()
    assert shot.is_file()
    candidates = step["candidates"]
    assert isinstance(candidates, list) and candidates, step["message"]
    assert all(len(c["box"]) == 4 for c in candidates)
    case = ET.parse(out / "junit.xml").getroot().find("testsuite/testcase")
    assert case is not None
    assert f"[[ATTACHMENT|{shot}]]" in (case.findtext("system-out") or "")
    assert {p.get("name"): p.get("value") for p in case.iterfind("properties/property")} == {
        "screenshot": str(shot)}
    html = (out / "report" / "index.html").read_text()
    assert "closest or competing texts read" in html and "candidates" in html
    page = (out / "report" / "index.html").absolute()
    assert f"{page.as_uri()}#task-1-step-2" in done.stdout
    assert f"open the report: xdg-open {page}" in done.stdout
