"""The JUnit file: counts, one test case per task, the failing step and its screenshot."""

from __future__ import annotations

import stat
import xml.etree.ElementTree as ET
from pathlib import Path

from deskpilot.agent.reports.junit import failure_message, write_junit, xml_text
from deskpilot.agent.tasks.results import ScriptStep, SuiteResult, TaskResult, TaskStatus
from tests.test_report import HOSTILE_MODEL_TEXT, HOSTILE_NAME, make_suite


def _write(tmp_path: Path, suite: SuiteResult) -> ET.Element:
    path = tmp_path / "out" / "junit.xml"
    write_junit(path, suite)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert [p.name for p in path.parent.iterdir()] == ["junit.xml"]  # no temp file left
    return ET.parse(path).getroot()


def test_counts_and_attributes(tmp_path: Path) -> None:
    suite = make_suite(tmp_path)
    root = _write(tmp_path, suite)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    (testsuite,) = root.findall("testsuite")
    assert testsuite.attrib == {"name": "deskpilot", "tests": "3", "failures": "1",
                                "errors": "1", "time": "6.900", "skipped": "0",
                                "timestamp": "2025-05-04T10:11:12+02:00"}
    properties = {p.get("name"): p.get("value") for p in testsuite.iterfind("properties/property")}
    assert properties == {"display": ":99", "screen_size": "1280x800"}
    cases = testsuite.findall("testcase")
    assert [(c.get("classname"), c.get("name"), c.get("time"), c.get("file")) for c in cases] == [
        ("deskpilot.login", "log in", "0.600", "tasks/login.yaml"),
        ("deskpilot.save", HOSTILE_NAME, "6.200", "tasks/save.yaml"),
        ("deskpilot.edit", "edit", "0.010", "tasks/edit.yaml")]
    passed, failed, errored = cases
    assert passed.find("failure") is None and passed.find("error") is None
    assert failed.find("error") is None and errored.find("failure") is None


def test_failure_names_the_step_and_screenshot(tmp_path: Path) -> None:
    suite = make_suite(tmp_path)
    failed = _write(tmp_path, suite).findall("testsuite/testcase")[1]
    failure = failed.find("failure")
    assert failure is not None
    assert failure.get("type") == "StepFailed"
    assert failure.get("message") == ('step 3 (line 9): click <script>Save</script>: '
                                      'no "Save" button </details> on the screen')
    shot = (tmp_path / "run-bad" / "screens" / "step-0003.png").absolute()
    details = failure.text or ""
    assert f"screenshot: {shot}" in details
    assert f"difference: {shot.parent / 'step-0003-diff.png'}" in details
    assert "grounding source: model" in details and "point: (1600, 430)" in details
    assert HOSTILE_MODEL_TEXT in details  # XML escaping is the parser's business, not ours
    out = failed.findtext("system-out") or ""
    assert f"[[ATTACHMENT|{shot}]]" in out
    assert f"[[ATTACHMENT|{shot.parent / 'step-0003-diff.png'}]]" in out
    properties = {p.get("name"): p.get("value") for p in failed.iterfind("properties/property")}
    assert properties == {"screenshot": str(shot),
                          "difference": str(shot.parent / "step-0003-diff.png")}
    lines = out.splitlines()
    assert lines[:4] == [s.line() for s in suite.tasks[1].steps]
    assert lines[2].startswith("  FAIL  3. click <script>Save</script> via model")


def test_error_and_passed_cases(tmp_path: Path) -> None:
    cases = _write(tmp_path, make_suite(tmp_path)).findall("testsuite/testcase")
    error = cases[2].find("error")
    assert error is not None
    assert error.get("type") == "TaskError"
    assert error.get("message") == "step 1 (line 2): launch: gedit: gedit: command not found"
    # No screenshot was taken, so none is attached.
    assert "ATTACHMENT" not in (cases[2].findtext("system-out") or "")
    out = cases[0].findtext("system-out") or ""
    assert "ATTACHMENT" not in out and len(out.splitlines()) == 2


def test_control_characters_are_stripped(tmp_path: Path) -> None:
    step = ScriptStep(index=1, kind="expect", label="expect: a\x00b", file_line=1,
                      passed=False, message="saw \x1b[31mred\x07", model_text="x\x0cy")
    task = TaskResult(name="bell\x07", file=Path("t.yaml"), status=TaskStatus.FAILED,
                      message="m", steps=(step,), seconds=1.0)
    root = _write(tmp_path, SuiteResult(tasks=(task,), seconds=1.0, started="now"))
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == "bell"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "step 1 (line 1): expect: ab: saw [31mred"
    assert xml_text("tab\tnew\nline\r\U0001f600") == "tab\tnew\nline\r\U0001f600"


def test_failed_task_without_a_failing_step_uses_its_message() -> None:
    task = TaskResult(name="t", file=Path("t.yaml"), status=TaskStatus.ERROR,
                      message="the display died", steps=(), seconds=0.0)
    assert failure_message(task) == "the display died"


def test_empty_suite(tmp_path: Path) -> None:
    root = _write(tmp_path, SuiteResult(tasks=(), seconds=0.0, started="now"))
    assert root.get("tests") == "0" and root.findall("testsuite/testcase") == []


def test_a_failed_comparison_attaches_baseline_actual_and_difference(tmp_path: Path) -> None:
    from tests.test_report import visual_suite

    suite = visual_suite(tmp_path)
    (case,) = _write(tmp_path, suite).findall("testsuite/testcase")
    screens = (tmp_path / "run-visual" / "screens").absolute()
    out = case.findtext("system-out") or ""
    for name in ("home.png", "home-baseline.png", "home-diff.png"):
        assert f"[[ATTACHMENT|{screens / name}]]" in out
    properties = {p.get("name"): p.get("value") for p in case.iterfind("properties/property")}
    assert properties == {"screenshot": str(screens / "home.png"),
                          "baseline": str(screens / "home-baseline.png"),
                          "difference": str(screens / "home-diff.png")}
