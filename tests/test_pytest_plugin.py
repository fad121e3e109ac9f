"""The pytest plugin, run by pytest itself (pytester, in subprocesses): task files collected as
tests, the desktop fixture, the JUnit content, pytest-xdist with one merged report, and
--shard covering every file exactly once. The CLI's --shard is checked here too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deskpilot.agent.tasks.shard import in_shard

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
needs_x = pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xcalc") is None,
                             reason="needs Xvfb and xcalc (make test installs them)")

PASSING = """\
name: nine is pressed
setup:
  launch:
    - command: xcalc
      wait_for: {window: Calculator}
steps:
  - click: "9"
  - expect: {text: "9", region: [0, 0, 1280, 200]}
"""
FAILING = """\
name: the display never shows 99
setup:
  launch:
    - command: xcalc
      wait_for: {window: Calculator}
steps:
  - click: "9"
  - expect: {text: "99", region: [0, 0, 1280, 200], timeout_s: 0.5}
"""
BROKEN = """\
name: broken
steps:
  - click: {text: Save, colour: red}
"""
FIXTURE_TEST = """\
def test_xcalc_with_the_fixture(desktop):
    desktop.launch("xcalc", wait_for_window="Calculator")
    for key in ("4", "+", "5", "="):
        desktop.click(key)
    desktop.expect("9", region=(0, 0, 1280, 60))


def test_an_assertion_of_the_test_fails_its_desktop(desktop):
    assert desktop.steps == (), "failed on purpose"
    desktop.launch("xcalc", wait_for_window="Calculator")
    assert desktop.click("9").passed is False, "failed on purpose"
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    env_runs = pytester.path / "runs"
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider",
                                         f"--deskpilot-runs-dir={env_runs}",
                                         f"--deskpilot-cache-dir={pytester.path / 'cache'}",
                                         *args, timeout=300)


@needs_x
def test_task_files_are_tests_with_a_line_precise_failure_and_a_screenshot_in_junit(
        pytester: pytest.Pytester) -> None:
    pytester.makefile(".desk.yaml", passing=PASSING, failing=FAILING)
    pytester.makefile(".yaml", ignored=PASSING)  # not matching the patterns: not collected
    result = _run(pytester, "--junitxml=junit.xml", "--deskpilot-report=report")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == 1
    out = result.stdout.str()
    assert "step 2 at line 8: expect: {text: '99'" in out
    assert re.search(r"screenshot: \S+step-002\.png", out)
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").iter("testcase")}
    props = {p.get("name"): p.get("value") for p in
             cases["the display never shows 99"].iter("property")}
    assert Path(props["screenshot"]).is_file() and props["screenshot"].endswith(".png")
    assert Path(props["deskpilot_run_dir"]).is_dir()
    html = (pytester.path / "report" / "index.html").read_text()
    assert "nine is pressed" in html and "the display never shows 99" in html
    assert "report of 2 desktop tasks" in out

    pytester.makefile(".desk.yaml", broken=BROKEN)  # as pytest does: collection stops the run
    broken = _run(pytester)
    broken.assert_outcomes(errors=1)
    assert broken.ret == 2
    assert "broken.desk.yaml:3: steps[0].click.colour: unknown key" in broken.stdout.str()


@needs_x
def test_xdist_workers_share_one_merged_report(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makefile(".desk.yaml", passing=PASSING, failing=FAILING)
    pytester.makepyfile(test_fixture=FIXTURE_TEST)
    result = _run(pytester, "-n", "2", "--deskpilot-report=report")
    result.assert_outcomes(passed=2, failed=2)
    html = (pytester.path / "report" / "index.html").read_text()
    assert "the test failed: " in html  # the assertion made its desktop's task fail
    for name in ("nine is pressed", "the display never shows 99",
                 "test_xcalc_with_the_fixture"):
        assert name in html
    workers = {p.name for p in (pytester.path / "runs").iterdir()}
    assert workers <= {"gw0", "gw1"} and workers, workers


def test_shards_cover_every_file_exactly_once(pytester: pytest.Pytester) -> None:
    for i in range(5):
        pytester.makefile(".desk.yaml", **{f"t{i}": PASSING.replace("nine", f"task {i}")})
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    seen: list[str] = []
    for k in (1, 2, 3):
        result = _run(pytester, "--collect-only", "-q", f"--shard={k}/3")
        ids = [line for line in result.stdout.lines if "::" in line]
        files = {i.split("::")[0] for i in ids}
        assert 1 <= len(files) <= 2, ids
        seen += sorted(files)
    assert sorted(seen) == sorted([f"t{i}.desk.yaml" for i in range(5)] + ["test_plain.py"])
    bad = _run(pytester, "--collect-only", "--shard=4/3")
    assert bad.ret == 4 and "need 1 <= K <= N" in bad.stderr.str()


def test_in_shard_is_stable_balanced_and_keeps_the_order() -> None:
    files = [f"suite/{c}.yaml" for c in "edcba"]
    parts = [in_shard(files, (k, 2), str) for k in (1, 2)]
    # sorted a..e cut into [a, b, c] and [d, e], each kept in the order it was given
    assert parts == [["suite/c.yaml", "suite/b.yaml", "suite/a.yaml"],
                     ["suite/e.yaml", "suite/d.yaml"]]
    assert in_shard(files, (1, 2), str) == parts[0]  # the same every time
    assert in_shard(["x"], (2, 2), str) == []


@needs_x
def test_the_cli_shards_task_files_the_same_way(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"w{i}.yaml").write_text(f"name: wait {i}\nsteps:\n  - wait: 0.05\n")
    names = []
    for k in (1, 2, 3, 4):
        out = subprocess.run(
            [sys.executable, "-m", "deskpilot", "run", "--headless", "--xvfb",
             "--runs-dir", str(tmp_path / "runs"), f"--shard={k}/4",
             *sorted(str(p) for p in tmp_path.glob("w*.yaml"))],
            capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "DISPLAY"})
        assert out.returncode == 0, out.stdout + out.stderr
        names += re.findall(r"▶ (wait \d)", out.stdout)
        if "has no task files" in out.stdout:
            assert k == 4
    assert sorted(names) == ["wait 0", "wait 1", "wait 2"]


@needs_x
def test_the_pytest_example_runs_under_xdist(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-n", "2", str(ROOT / "examples" / "pytest"), f"--deskpilot-report={tmp_path / 'r'}",
         f"--deskpilot-runs-dir={tmp_path / 'runs'}", "--deskpilot-cache=off"],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
    assert (tmp_path / "r" / "index.html").is_file()
