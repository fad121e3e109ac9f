"""The interface for real: `deskpilot run` in a tmux terminal, the tiny model through llama.cpp,
acting on xcalc on a private Xvfb display. The pane is read back as a person would see it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deskpilot.grounding.xvfb import display_env, launched

pytestmark = [pytest.mark.display, pytest.mark.llama,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

SIZES = [(140, 42), (80, 24)]  # a roomy terminal, and the smallest usual one


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", "deskpilot-test", *args], check=True, text=True,
                          capture_output=True, timeout=20).stdout


@pytest.fixture(params=SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def size(request: pytest.FixtureRequest) -> tuple[int, int]:
    """The terminal's columns and rows."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def session(display: str, tmp_path: Path, size: tuple[int, int]
            ) -> Iterator[tuple[str, Path]]:
    """A tmux session running the interface; it is killed at the end, whatever happened."""
    exit_file = tmp_path / "exit"
    command = " ".join([
        # COLUMNS/LINES from the test's own environment would override the pane's real size.
        "env", "-u", "COLUMNS", "-u", "LINES", f"DISPLAY={display}",
        # The test display takes only clients with its cookie (grounding/xvfb.py).
        shlex.quote(f"XAUTHORITY={display_env(display).get('XAUTHORITY', '')}"),
        shlex.quote(sys.executable), "-P", "-m", "deskpilot", "run",
        shlex.quote("press 7 on the calculator"), "--model", "tiny", "--max-steps", "3",
        "--runs-dir", shlex.quote(str(tmp_path / "runs")),
        ";", "echo", "$?", ">", shlex.quote(str(exit_file)), ";", "sleep", "60"])
    with launched(["xcalc", "-geometry", "+10+10"], display, window="Calculator"):
        tmux("new-session", "-d", "-s", "dp", "-x", str(size[0]), "-y", str(size[1]),
             "-c", str(Path(__file__).parent.parent), command)
        try:
            yield "dp", exit_file
        finally:
            subprocess.run(["tmux", "-L", "deskpilot-test", "kill-server"], check=False,
                           capture_output=True)


def pane() -> str:
    return tmux("capture-pane", "-p", "-t", "dp")


def wait_for(text: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        shown = pane()
        if text in shown:
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared; the pane shows:\n{shown}")
        time.sleep(0.5)


def test_a_person_watches_a_run_to_its_end_and_quits(session: tuple[str, Path],
                                                      size: tuple[int, int]) -> None:
    _, exit_file = session
    shown = wait_for(" ended · ", timeout_s=180)  # the run ended; the interface stays
    lines = shown.splitlines()
    assert "press 7 on the calculator" in lines[0]
    assert "model deskpilot-tiny-phi4rv.gguf · mode direct · step" in lines[1]
    assert "kill switch Ctrl+Alt+K (works anywhere)" in shown
    # The keys that stop and quit are on the key bar at any size; the rest where it fits.
    assert lines[-1].lstrip().startswith("x Stop  q Quit"), lines[-1]
    assert ("space Pause/resume" in lines[-1]) or size[0] < 80
    # The step table's header, most important columns first, with at least one step below.
    assert re.search(r"#\s+outcome\s+time\s+action", shown), shown
    assert len(lines) == size[1]  # nothing printed past the interface scrolled the screen
    for noise in ("llama_", "ggml_", "clip_", "mtmd", "Traceback"):
        assert noise not in shown, f"{noise} leaked onto the interface:\n{shown}"
    tmux("send-keys", "-t", "dp", "q")
    deadline = time.monotonic() + 20
    while not exit_file.exists() or not exit_file.read_text().strip():
        assert time.monotonic() < deadline, pane()
        time.sleep(0.2)
    assert exit_file.read_text().strip() in {"0", "1"}  # done, or any other honest ending
    after = pane()
    assert "trajectory: " in after  # the outcome is printed on the plain terminal after
    runs = list((exit_file.parent / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "trajectory.jsonl").stat().st_size > 0
    assert (runs[0] / "native.log").stat().st_mode & 0o777 == 0o600
