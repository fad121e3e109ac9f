"""Issue 15 on real X apps under a private Xvfb: Unicode typing, focus, launched process
groups and their windows, a run killed outright, settled windows and typing pauses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
needs_x = pytest.mark.skipif(
    not all(shutil.which(p) for p in ("Xvfb", "xcalc", "xdotool", "xterm", "xmessage")),
    reason="needs Xvfb, xcalc, xterm, xmessage and xdotool (make deps)")
pytestmark = [pytest.mark.display, needs_x]


def deskpilot(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    return subprocess.run([sys.executable, "-P", "-m", "deskpilot", "run", *map(str, args),
                           "--headless", "--xvfb", "--cache", "off"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def cases(junit: Path) -> dict[str, ET.Element]:
    return {c.get("name", ""): c for c in ET.parse(junit).getroot().iter("testcase")}


def processes_with(token: str) -> list[int]:
    """Ids of live processes whose command line holds ``token`` (zombies excluded)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if token in (proc / "cmdline").read_bytes().decode("utf-8", "replace") and \
                    (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


UNICODE = "héllo €uro 中文 ñ"


def test_unicode_typed_whole_into_a_focused_window_and_nothing_typed_into_no_window(
        tmp_path: Path) -> None:
    out = tmp_path / "typed.txt"
    (tmp_path / "types.yaml").write_text(
        "name: types unicode\nsetup:\n  launch:\n"
        f"    - command: xterm -u8 -T Typist -geometry 60x5+10+10 -e sh -c 'head -n1 > {out}'\n"
        "      env: {LANG: C.UTF-8, LC_ALL: C.UTF-8}\n"
        "      wait_for: {window: Typist}\n"
        "allow: [terminal_typing]\n"  # xterm is a terminal: the task says it means to type
        f"steps:\n  - type: \"{UNICODE}\\n\"\n"
        f"  - expect_file: {{path: {out}, contains: \"{UNICODE}\"}}\n")
    (tmp_path / "nowhere.yaml").write_text(
        "name: types into nothing\nsetup:\n  launch: xmessage -geometry +900+600 nobody\n"
        "steps:\n  - wait: 1\n  - type: abc\n")
    junit = tmp_path / "junit.xml"
    done = deskpilot(tmp_path / "types.yaml", tmp_path / "nowhere.yaml", "--junit", junit,
                     "--runs-dir", tmp_path / "runs")
    got = cases(junit)
    assert got["types unicode"].find("failure") is None, done.stdout + done.stderr
    assert out.read_text(encoding="utf-8").strip() == UNICODE
    failure = got["types into nothing"].find("failure")
    assert failure is not None and "no window has the keyboard focus" in \
        failure.get("message", "")


def test_a_task_leaves_no_process_of_its_group_and_no_window_for_the_next(
        tmp_path: Path) -> None:
    token = f"Leftover{os.getpid()}"
    (tmp_path / "a.yaml").write_text(
        "name: opens a dialog\nsetup:\n  launch:\n"
        f"    - command: sh -c 'xmessage -fn 10x20 -title {token} -geometry +20+20 Confirm"
        " & sleep 600'\n"
        f"      wait_for: {{window: {token}}}\n"
        "steps:\n  - expect: {text: Confirm, region: [0, 0, 400, 200]}\n")
    (tmp_path / "b.yaml").write_text(
        "name: finds no dialog\nsteps:\n"
        "  - expect_not: {text: Confirm, region: [0, 0, 400, 200], timeout_s: 2}\n")
    junit = tmp_path / "junit.xml"
    done = deskpilot(tmp_path / "a.yaml", tmp_path / "b.yaml", "--junit", junit,
                     "--runs-dir", tmp_path / "runs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert processes_with(token) == []


def test_killing_deskpilot_outright_takes_its_xvfb_and_programs_along(tmp_path: Path) -> None:
    token = f"Orphan{os.getpid()}"
    task = tmp_path / "t.yaml"
    task.write_text("name: waits\nbudget: {timeout_s: 120}\nsetup:\n  launch:\n"
                    f"    - command: xmessage -title {token} hello\n"
                    f"      wait_for: {{window: {token}}}\n"
                    "steps:\n  - wait: 90\n")
    runs = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.Popen([sys.executable, "-P", "-m", "deskpilot", "run", str(task),
                             "--headless", "--xvfb", "--runs-dir", str(runs)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(runs.glob("*/steps.jsonl")) and not processes_with(token):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.0)
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and _parent(p) == proc.pid]
        assert len(children) >= 2  # Xvfb and xmessage
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while (alive := [c for c in children if _alive(c)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive == [] and processes_with(token) == []
    # The next run does not trip over what the killed one left behind.
    task.write_text("name: runs again\nsteps:\n  - wait: 0\n")
    again = deskpilot(task, "--runs-dir", runs)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not Path(f"/tmp/deskpilot-xauth-{proc.pid}").exists()
    assert not list(Path("/tmp").glob(f"deskpilot-xauth-{proc.pid}-*"))


def _parent(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_calculator_gets_every_key_typed_right_after_its_window_appears(
        tmp_path: Path) -> None:
    task = tmp_path / "calc.yaml"
    task.write_text("name: calc types\nsetup:\n  launch:\n"
                    "    - command: xcalc -geometry +400+150\n"
                    "      wait_for: {window: Calculator}\n"
                    "steps:\n  - type: '12*12='\n"
                    "  - expect: {text: '144', region: [400, 150, 640, 200], timeout_s: 10}\n"
                    "  - type: {text: '3*3=', interval_ms: 40}\n"
                    "  - expect: {text: '9', region: [400, 150, 640, 200], timeout_s: 10}\n")
    done = deskpilot(task, "--runs-dir", tmp_path / "runs")
    assert done.returncode == 0, done.stdout + done.stderr
