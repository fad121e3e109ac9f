"""The display disappears mid-run: a headless task run must fail cleanly, not crash.

``deskpilot run TASK.yaml --headless --xvfb`` starts its own Xvfb (a child process of the
deskpilot process). The task launches xcalc and then waits for a text that never shows, so the
run is busy reading the screen; the test then kills that Xvfb with SIGKILL, as an OOM killer or
a crashed server would. Expected (reliability matrix, part (b)): the run ends within seconds
with exit code 1, stderr carries no traceback, and the JUnit file holds an error (or failure)
test case that says the display was lost.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXIT_WITHIN_S = 20.0

pytestmark = [
    pytest.mark.display,
    pytest.mark.skipif(not all(shutil.which(p) for p in ("Xvfb", "xcalc", "xdotool")),
                       reason="needs Xvfb, xcalc and xdotool (make deps)"),
]

TASK = """\
name: display lost mid-run
setup:
  launch:
    - command: xcalc -geometry +400+150
      wait_for: {window: Calculator}
steps:
  - wait_for: {text: "never shown", timeout_s: 30}
"""


def children_of(pid: int) -> dict[int, str]:
    """The direct children of a process, by pid, with their command names (from /proc)."""
    found: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, pids):
            try:
                found[child] = Path(f"/proc/{child}/comm").read_text().strip()
            except OSError:
                continue
    return found


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll until ``condition()`` returns something true; fail with ``what`` at the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_xvfb_killed_mid_run_fails_cleanly_with_a_junit_error(tmp_path: Path) -> None:
    task = tmp_path / "lost.yaml"
    task.write_text(TASK)
    junit, out, err = tmp_path / "junit.xml", tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "deskpilot", "run", str(task), "--headless", "--xvfb",
             "--junit", str(junit), "--runs-dir", str(tmp_path / "runs"), "--cache", "off"],
            cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    try:
        # Both children up: the display and, on it, the calculator's window.
        def both_up() -> dict[int, str] | None:
            kids = children_of(proc.pid)
            return kids if {"Xvfb", "xcalc"} <= set(kids.values()) else None

        kids = wait_for(both_up, 60, "Xvfb and xcalc under the deskpilot process")
        assert isinstance(kids, dict)
        xvfb_pid = next(pid for pid, name in kids.items() if name == "Xvfb")
        xcalc_pid = next(pid for pid, name in kids.items() if name == "xcalc")
        display = wait_for(lambda: re.search(r"private Xvfb (:\d+)", out.read_text()), 30,
                           "the run to name its display")
        assert isinstance(display, re.Match)
        # The private display takes only clients with its cookie: borrow the one the run
        # handed the calculator (its environment names the authority file).
        xcalc_env = dict(item.split(b"=", 1) for item in
                         Path(f"/proc/{xcalc_pid}/environ").read_bytes().split(b"\0") if item)
        cookie = {"XAUTHORITY": xcalc_env[b"XAUTHORITY"].decode()}
        wait_for(lambda: subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", "Calculator"],
            env={**env, **cookie, "DISPLAY": display[1]}, capture_output=True,
            check=False).returncode == 0,
            30, "the calculator's window")
        time.sleep(2.0)  # well into the wait_for step, which reads the screen over and over
        assert proc.poll() is None, out.read_text() + err.read_text()

        os.kill(xvfb_pid, signal.SIGKILL)
        killed = time.monotonic()
        try:
            code = proc.wait(timeout=EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"deskpilot still running {EXIT_WITHIN_S} s after its display died\n"
                        f"stdout:\n{out.read_text()}\nstderr:\n{err.read_text()}")
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout_text, stderr_text = out.read_text(), err.read_text()
    report = (f"exit {code} after {took:.1f} s\nstdout:\n{stdout_text}\n"
              f"stderr (tail):\n{stderr_text[-3000:]}")

    wait_for(lambda: not alive(xcalc_pid), 10, "xcalc to be gone")
    assert code == 1, report
    assert "Traceback" not in stderr_text, report
    assert junit.is_file(), report
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == 1, report
    problems = [p for tag in ("error", "failure") for p in cases[0].findall(tag)]
    assert problems, report
    said = " ".join(f"{p.get('message', '')} {p.text or ''}" for p in problems)
    assert "display" in said.lower(), said
    assert re.search(r"(ERROR|FAIL).*display", stdout_text, re.IGNORECASE), report
