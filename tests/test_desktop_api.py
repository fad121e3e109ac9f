"""deskpilot.Desktop against real xcalc and xedit on private Xvfb displays.

The steps run through the task runner's own machinery: OCR grounding, the grounding cache
(verified on screen), the safety gate, the records and the report. Model calls go through the
scripted runtime, and once through the tiny random-weight model on the real llama.cpp path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deskpilot import (
    ActionDenied,
    Desktop,
    DesktopError,
    ExpectationFailed,
    ModelStepFailed,
    SetupFailed,
    TargetNotFound,
    write_report,
)
from deskpilot.agent.tasks.results import Source, TaskStatus
from deskpilot.models.runtime import Reply
from deskpilot.models.scripted import ScriptedRuntime

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xcalc") is None,
                                reason="needs Xvfb and xcalc (make test installs them)")
ROOT = Path(__file__).resolve().parents[1]


def _desktop(tmp_path: Path, **options: object) -> Desktop:
    options.setdefault("cache_dir", tmp_path / "cache")
    options.setdefault("source", tmp_path / "test_calc.py")  # baselines go beside it
    return Desktop.headless(size=(1280, 800), runs_dir=tmp_path / "runs", **options)


def test_xcalc_by_ocr_then_from_the_verified_cache(tmp_path: Path) -> None:
    for attempt in ("ocr", "cache"):
        mode = "read-write" if attempt == "ocr" else "read-only"
        with _desktop(tmp_path, cache=mode) as d:
            d.launch("xcalc", wait_for_window="Calculator")
            clicks = [d.click(key) for key in ("7", "+", "8", "=")]
            seen = d.expect("15", region=(0, 0, 1280, 200))
        assert d.result is not None and d.result.status is TaskStatus.PASSED, d.result
        want = Source.OCR if attempt == "ocr" else Source.CACHE
        assert [c.source for c in clicks] == [want] * 4, [c.message for c in clicks]
        assert seen.passed and seen.screenshot is not None
        records = (d.result.run_dir / "steps.jsonl").read_text().splitlines()  # type: ignore[operator]
        assert [json.loads(r)["kind"] for r in records] == ["click"] * 4 + ["expect"]


def test_failures_raise_typed_errors_carrying_the_step_and_its_line(tmp_path: Path) -> None:
    with _desktop(tmp_path, cache="off", source=Path(__file__)) as d:
        d.launch("xcalc", wait_for_window="Calculator")
        with pytest.raises(TargetNotFound) as missing:
            line = sys._getframe().f_lineno + 1
            d.click("NoSuchKey")
        with pytest.raises(ExpectationFailed) as expected:
            d.expect("424242", timeout_s=0.5)
        with pytest.raises(ActionDenied) as denied:
            d.key("ctrl+alt+t")  # a sensitive chord: headless, nobody can approve it
    assert missing.value.step.kind == "click" and "NoSuchKey" in str(missing.value)
    assert missing.value.step.file_line == line
    assert f"(line {line})" in str(missing.value)
    assert expected.value.screenshot is not None and expected.value.screenshot.is_file()
    assert "sensitive" in denied.value.step.message.lower()
    assert d.result is not None and d.result.status is TaskStatus.FAILED
    assert d.result.failed_step is missing.value.step or \
        d.result.failed_step == missing.value.step


def test_xedit_types_a_secret_that_no_record_shows(tmp_path: Path) -> None:
    if shutil.which("xedit") is None:
        pytest.skip("needs xedit")
    note = tmp_path / "note.txt"
    with _desktop(tmp_path, secrets={"word": "Swordfish42"}, variables={"who": "deskpilot"},
                  cache="off") as d:
        d.launch(f"xedit -geometry 700x400+300+120 {note}", wait_for_window="xedit")
        d.click(at=(650, 350))
        d.type("from ${who}: ${word}")
        d.click("Save")
        d.expect("Saved file")
        d.expect_file(note, contains="${word}")
    assert note.read_text().startswith("from deskpilot: Swordfish42")
    run_dir = d.result.run_dir if d.result else None
    assert run_dir is not None
    written = "".join(p.read_text(errors="replace") for p in run_dir.rglob("*.json*"))
    assert "Swordfish42" not in written
    typed = d.result.steps[1] if d.result else None
    assert typed is not None and typed.kind == "type" and typed.passed


def test_scripted_model_answers_query_check_and_a_described_target(tmp_path: Path) -> None:
    runtime = ScriptedRuntime([
        "[0.05, 0.005, 0.1, 0.02]",  # the grounding answer: on xcalc's display, harmless
        '{"value": "0"}',
        Reply(answer="yes", reasoning="A calculator is shown."),
        Reply(answer="no", reasoning="Nothing is green."),
        "not an answer at all",
        '{"action": "done", "answer": "the display shows 0"}',
    ])
    with _desktop(tmp_path, model=runtime, cache="off") as d:
        d.launch("xcalc", wait_for_window="Calculator")
        located = d.click(target="the calculator's display")
        assert d.query("the number on the display") == "0"
        assert d.check("a calculator is on the screen") is True
        assert d.check("the screen is green") is False
        with pytest.raises(ModelStepFailed):
            d.check("this answer cannot be parsed")
        done = d.do("read the display and say what it shows")
    kinds = [s.kind for s in d.result.steps] if d.result else []
    assert kinds == ["click", "query", "check", "check", "check", "do"]
    assert located.source is Source.MODEL and located.box == (64, 4, 128, 16), located
    assert len(runtime.requests) == 6 and all("<image>" in r.prompt for r in runtime.requests)
    assert done.passed and len(done.agent_steps) == 1 and "done" in done.message


def test_the_tiny_model_runs_a_check_on_the_real_llama_cpp_path(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    with _desktop(tmp_path, model="tiny", cache="off") as d:
        d.launch("xcalc", wait_for_window="Calculator")
        try:
            verdict: bool | None = d.check("the calculator shows 0")
        except ModelStepFailed:  # random weights may still answer outside the grammar's intent
            verdict = None
    assert d.result is not None
    (step,) = d.result.steps
    assert step.kind == "check" and step.source is Source.MODEL and step.seconds > 0
    assert verdict in (True, False, None)


def test_results_feed_the_same_reports_as_task_files(tmp_path: Path) -> None:
    with _desktop(tmp_path, name="reported desktop", cache="off") as d:
        d.launch("xcalc", wait_for_window="Calculator")
        d.click("7")
    suite = write_report([d], report=tmp_path / "report", junit=tmp_path / "junit.xml")
    assert suite.passed and len(suite.tasks) == 1
    assert "reported desktop" in (tmp_path / "report" / "index.html").read_text()
    assert 'tests="1"' in (tmp_path / "junit.xml").read_text()


def test_misuse_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(SetupFailed, match="DISPLAY is not set"):
        Desktop.current()
    d = _desktop(tmp_path)
    with pytest.raises(DesktopError, match="not open"):
        d.click("7")
    with d, pytest.raises(DesktopError, match="another Desktop is open"):
        _desktop(tmp_path).open()
    with _desktop(tmp_path) as d2:
        with pytest.raises(ValueError, match=r"click\.at\[0\]: .*greater than or equal to 0"):
            d2.click(at=(-5, 3))
        with pytest.raises(ValueError, match="unknown variable"):
            d2.type("${nope}")
        with pytest.raises(SetupFailed, match="not installed"):
            d2.launch("no-such-program-here")


def test_the_python_example_runs() -> None:
    env = {**os.environ, "DESKPILOT_RUNS": str(Path(os.environ.get("TMPDIR", "/tmp")))}
    env.pop("DISPLAY", None)
    out = subprocess.run([sys.executable, str(ROOT / "examples/python/calculator.py")],
                         capture_output=True, text=True, timeout=180, env=env, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "7 + 8 = 15" in out.stdout
