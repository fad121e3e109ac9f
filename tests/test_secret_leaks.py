"""Secrets that leaked past exact-copy redaction, output that trusted its content, and a cache
that trusted its entries (issue 14, classes 7-10, 12, 13), on fake screens and readers.

Each integration test has a control: the same run without the secret marked secret shows the
text, so the test would fail if redaction did nothing.
"""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deskpilot.actions.redaction import Redaction
from deskpilot.actions.text import SECRET, printable, redact, shorten
from deskpilot.actions.types import Type, summarize
from deskpilot.agent.cli.console import print_step, print_task, print_task_result, say
from deskpilot.agent.clock import SystemClock
from deskpilot.agent.records import Outcome, StepRecord
from deskpilot.agent.reports.outputs import Outputs, write_outputs
from deskpilot.agent.tasks.cache import CacheMode, GroundingCache, cache_key
from deskpilot.agent.tasks.file import TaskFileError, load_task
from deskpilot.agent.tasks.results import SuiteResult, TaskStatus
from deskpilot.agent.tasks.run import run_task
from deskpilot.grounding.ocr import FakeReader, TextBox, TextLine
from deskpilot.grounding.template import cut
from deskpilot.models.runtime import Reply
from deskpilot.models.scripted import ScriptedRuntime
from tests.test_taskrun import SAVE, centre, draw, lines, moves, services, task_file

SECRET_VALUE = "Tr0ub4dor-Horse-Battery9"
MISREAD = "tr0ub4dor-h0rse-Batterv9"  # what OCR made of it: case, 0/o, y/v


# --- 7. Near copies ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    MISREAD, SECRET_VALUE.upper(), "Tr0ub4dor Horse Battery9", "Tr0ub4d0r-Horse-Battery",
    "TrOub4dor-Horse-Battery9", "xx Tr0ub4dor-Horse-Batt3ry9 yy", "Tr 0 ub 4 dor-Horse-Battery9"])
def test_near_copies_are_hidden(text: str) -> None:
    out = redact(text, [SECRET_VALUE])
    assert SECRET in out
    assert "Horse" not in out and "h0rse" not in out.lower()


@pytest.mark.parametrize("text", ["Trouble at the horse races", "Battery low: 9%",
                                  "the report is ready", "Tr0ub4dor"])
def test_unrelated_text_stays(text: str) -> None:
    assert redact(text, [SECRET_VALUE]) == text


def test_short_secrets_are_hidden_only_exactly() -> None:
    assert redact("pin 47110 and 47112", ["47110"]) == f"pin {SECRET} and 47112"
    assert redact("abc abd", ["abc"]) == f"{SECRET} abd"
    assert redact("code 4711-x and 4711-y", ["4711-x"]) == f"code {SECRET} and {SECRET}"


def write_all(tmp_path: Path, task_name: str, result: object) -> str:
    """Write JUnit, summary and report; return every artifact's text, the console's included."""
    suite = SuiteResult((result,), 1.0, "2026-01-01T00:00:00", ":9", (800, 600))  # type: ignore[arg-type]
    out = tmp_path / "out"
    write_outputs(suite, Outputs(junit=out / "junit.xml", summary=out / "s.json",
                                 report=out / "report"))
    return "\n".join(p.read_text(encoding="utf-8", errors="replace")
                     for root in (out, result.run_dir)  # type: ignore[attr-defined]
                     for p in Path(root).rglob("*") if p.is_file() and p.suffix != ".png")


@pytest.mark.parametrize("secret", [True, False], ids=["secret", "control"])
def test_an_ocr_misread_of_the_secret_reaches_no_artifact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        secret: bool) -> None:
    monkeypatch.setenv("DESKPILOT_TEST_PW", SECRET_VALUE)
    value = "${env:DESKPILOT_TEST_PW}" if secret else SECRET_VALUE
    body = (f"variables:\n  pw: {value}\n"
            "steps:\n  - click: Welcome\n")  # fails, listing what OCR saw: the misread
    screen_lines = [*lines(SAVE), TextLine(MISREAD, (100, 300, 400, 320), 0.9)]
    svc = services(tmp_path, draw(SAVE), FakeReader(screen_lines))
    task = load_task(task_file(tmp_path, body))
    print_task(task)
    result = run_task(task, svc)
    for step in result.steps:
        print_step(step)
    print_task_result(result)
    assert result.status is TaskStatus.FAILED
    everything = write_all(tmp_path, task.name, result) + capsys.readouterr().out
    assert (MISREAD in everything) is not secret


# --- 8. The model's echo, escaped forms, truncation ------------------------------------------

ODD = 'Pa"ss\\w0rd\'Xy-42'


@pytest.mark.parametrize("form", [json.dumps(ODD)[1:-1], repr(ODD)[1:-1],
                                  ODD.replace('"', '""'), ODD.replace("'", "''"),
                                  json.dumps(ODD, ensure_ascii=True)])
def test_escaped_forms_are_hidden(form: str) -> None:
    assert "w0rd" not in redact(f"answer: {form} end", [ODD])


def test_a_prefix_cut_by_truncation_is_hidden() -> None:
    typed = "please type this into the login form of the bank: " + SECRET_VALUE
    summary = summarize(Type(action="type", text=typed))  # shortens the text to 60 characters
    assert "Tr0ub" in summary and SECRET_VALUE not in summary and "…" in summary
    assert "Tr0u" not in redact(summary, [SECRET_VALUE])
    cut_short = shorten(typed, 56)
    assert redact(cut_short, [SECRET_VALUE]).endswith(SECRET + "…")


@pytest.mark.parametrize("secret", [True, False], ids=["secret", "control"])
def test_the_models_echo_in_a_do_step_reaches_no_artifact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: bool) -> None:
    monkeypatch.setenv("DESKPILOT_TEST_PW", SECRET_VALUE)
    value = "${env:DESKPILOT_TEST_PW}" if secret else SECRET_VALUE
    echo = json.dumps({"action": "done", "answer": f"I saw the password {MISREAD.upper()}"})
    runtime = ScriptedRuntime([Reply(answer=echo, reasoning=f"It reads {SECRET_VALUE!r}.")])
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)), runtime=runtime)
    body = f"variables:\n  pw: {value}\nsteps:\n  - do: log in with the password\n"
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.PASSED, result.message
    everything = write_all(tmp_path, "t", result)
    assert "agent/step-001/trajectory.jsonl" in "\n".join(
        str(p.relative_to(result.run_dir)) for p in result.run_dir.rglob("*.jsonl"))  # type: ignore[union-attr]
    leaked = any(t in everything for t in (MISREAD.upper(), SECRET_VALUE, "Tr0ub4d"))
    assert leaked is not secret


# --- 9. Secrets in launch arguments ----------------------------------------------------------


def test_a_secret_variable_in_a_launch_command_is_refused_when_the_file_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKPILOT_TEST_PW", SECRET_VALUE)
    body = ("variables:\n  pw: ${env:DESKPILOT_TEST_PW}\n  user: alice\n"
            "setup:\n  launch:\n    - command: myclient --user ${user} --password ${pw}\n"
            "steps:\n  - wait: 0\n")
    with pytest.raises(TaskFileError) as info:
        load_task(task_file(tmp_path, body))
    (problem,) = info.value.problems
    assert "${pw}" in problem and "ps" in problem and "env:" in problem
    assert "${user}" not in problem and SECRET_VALUE not in problem


def test_launch_env_hands_the_secret_over_privately(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKPILOT_TEST_PW", SECRET_VALUE)
    out = tmp_path / "child"
    command = (f"sh -c 'tr \"\\\\000\" \" \" < /proc/$$/cmdline > {out}.args; "
               f"printf %s \"$PW\" > {out}.env; sleep 5'")
    body = ("variables:\n  pw: ${env:DESKPILOT_TEST_PW}\n"
            f"setup:\n  launch:\n    - command: {json.dumps(command)}\n"
            "      env: {PW: '${pw}'}\n"
            "steps:\n  - wait: 0.5\n")
    svc = replace(services(tmp_path, draw(SAVE), FakeReader([])), clock=SystemClock())
    result = run_task(load_task(task_file(tmp_path, body)), svc)  # the wait is a real one
    assert result.status is TaskStatus.PASSED, result.message
    assert Path(f"{out}.env").read_text() == SECRET_VALUE
    args = Path(f"{out}.args").read_text()
    assert "sh -c" in args and SECRET_VALUE not in args


def test_a_literal_secret_value_in_a_launch_command_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKPILOT_TEST_PW", SECRET_VALUE)
    body = ("variables:\n  pw: ${env:DESKPILOT_TEST_PW}\n"
            f"setup:\n  launch: [echo {SECRET_VALUE}]\nsteps:\n  - wait: 0\n")
    result = run_task(load_task(task_file(tmp_path, body)),
                      services(tmp_path, draw(SAVE), FakeReader([])))
    assert result.status is TaskStatus.ERROR
    assert "launch command" in result.message and SECRET_VALUE not in result.message


# --- 10. Pixels ------------------------------------------------------------------------------


def test_masking_fills_the_boxes_of_lines_and_words_that_copy_a_secret() -> None:
    rgb = np.full((200, 400, 3), 200, np.uint8)
    reader = FakeReader([
        TextLine("user: alice", (10, 10, 120, 30), 0.9),
        TextLine(f"password: {MISREAD}", (10, 50, 390, 70), 0.9,
                 (TextBox("password:", (10, 50, 100, 70), 0.9),
                  TextBox(MISREAD, (110, 50, 390, 70), 0.9))),
    ])
    masked, count = Redaction([SECRET_VALUE], reader).image(rgb)
    assert count == 1
    assert (masked[50:70, 10:390] == 0).all()
    assert (masked[10:30, 10:120] == 200).all(), "other text stays"
    same, none = Redaction([], reader).image(rgb)
    assert none == 0 and same is rgb


@pytest.mark.parametrize("secret", [True, False], ids=["secret", "control"])
def test_typed_secret_pixels_are_masked_in_screenshots_and_never_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: bool) -> None:
    monkeypatch.setenv("DESKPILOT_TEST_PW", SECRET_VALUE)
    value = "${env:DESKPILOT_TEST_PW}" if secret else SECRET_VALUE
    shown = (100, 300, 400, 320)
    reader = FakeReader([*lines(SAVE), TextLine(SECRET_VALUE, shown, 0.9)])
    screen = draw(SAVE).copy()
    screen[shown[1]:shown[3], shown[0]:shown[2]] = 17  # the secret's "pixels"
    body = (f"variables:\n  pw: {value}\n"
            "steps:\n  - type: '${pw}'\n  - click: {text: '${pw}'}\n")
    svc = services(tmp_path, screen, reader)
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.PASSED, result.message
    assert result.run_dir is not None
    shots = sorted((result.run_dir / "screens").glob("*.png"))
    assert len(shots) == 2
    from deskpilot.grounding.visual import load_png
    for shot in shots:
        pixels = load_png(shot)[shown[1]:shown[3], shown[0]:shown[2]]
        assert bool((pixels == 0).all()) is secret, shot
    record = json.loads((result.run_dir / "result.json").read_text())
    assert (record.get("images_with_secrets_masked", 0) > 0) is secret
    assert ("masked in every image" in result.steps[0].message) is secret
    assert ("not cached (the target shows secret text)" in result.steps[1].message) is secret
    assert any((tmp_path / "cache").glob("*.png")) is not secret


# --- 12. Output that must not trust its content ----------------------------------------------

EVIL = "evil\x1b]0;pwned\x07\x1b[2J\x1b[31mred\r\x9bfake\u202etxt"


def test_printable_shows_every_control_character() -> None:
    out = printable(EVIL)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)
    assert "\u202e" not in out and "\\x1b]0;pwned" in out
    assert printable("a\nb\tc") == "a\nb\tc"
    assert printable("a\nb", one_line=True) == "a\\x0ab"


def test_the_console_escapes_task_names_and_model_answers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = load_task(task_file(tmp_path, "steps:\n  - wait: 0\n", name="ok"))
    object.__setattr__(task, "name", EVIL)
    print_task(task)
    print_step(StepRecord(index=1, outcome=Outcome.DENIED, summary=f"type text={EVIL!s}",
                          answer=EVIL, error=EVIL))
    say(EVIL)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\r" not in out


def test_the_cli_prints_only_through_the_console() -> None:
    cli = Path(__file__).parent.parent / "agent" / "cli"
    offenders = []
    for path in cli.glob("*.py"):
        if path.name == "console.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_the_tui_shows_model_text_escaped() -> None:
    from deskpilot.tui.app import live_text

    assert "\x1b" not in live_text(EVIL).plain


# --- 13. A cache entry that lies -------------------------------------------------------------


def test_an_entry_copied_under_another_key_is_refused(tmp_path: Path) -> None:
    screen = draw(SAVE)
    cache = GroundingCache(tmp_path, CacheMode.READ_WRITE)
    save_key = cache_key("t", "text:Save@None", (800, 600))
    load_key = cache_key("t", "text:Load@None", (800, 600))
    assert cache.put(load_key, cut(screen, (310, 108, 338, 120)), label="Load",
                     grounded_on="Load")
    for ext in ("png", "json"):
        (tmp_path / f"{save_key}.{ext}").write_bytes((tmp_path / f"{load_key}.{ext}")
                                                     .read_bytes())
    assert cache.get(load_key) is not None
    assert cache.get(save_key) is None, "the digest names its key"


@pytest.mark.parametrize("mode", [CacheMode.READ_ONLY, CacheMode.READ_WRITE])
def test_a_rebuilt_entry_holding_another_buttons_crop_is_not_clicked(
        tmp_path: Path, mode: CacheMode) -> None:
    screen = draw(SAVE)
    path = task_file(tmp_path, "steps:\n  - click: Save\n")
    # An attacker with this code (the digest is no signature) stores Load's crop under Save.
    attacker = GroundingCache(tmp_path / "cache", CacheMode.READ_WRITE)
    key = cache_key("t", "text:Save@None", (800, 600))
    assert attacker.put(key, cut(screen, (310, 108, 338, 120)), label="t: text:Save",
                        grounded_on="Save")
    svc = services(tmp_path, screen, FakeReader(lines(SAVE)), mode=mode)
    result = run_task(load_task(path), svc)
    step = result.steps[0]
    assert "label reads 'Load', not 'Save'" in step.message
    if mode is CacheMode.READ_ONLY:
        assert result.status is TaskStatus.FAILED and "refusing to click" in step.message
        assert moves(svc.device) == []  # type: ignore[arg-type]
    else:
        assert result.status is TaskStatus.PASSED and "grounded again" in step.message
        assert moves(svc.device) == [centre(100, 100)]  # type: ignore[arg-type]


def test_a_label_read_merged_with_its_neighbours_still_verifies_but_another_does_not() -> None:
    """OCR of a small crop may read a row of buttons as one line (xedit's "Quit Save Load"):
    the re-check accepts the label when its words stand whole there, and nothing looser."""
    from deskpilot.agent.tasks.act import _holds_words

    assert _holds_words("Quit Save Load", "Save")
    assert _holds_words("Quit save  Load", "SAVE")
    assert _holds_words("Save As Load", "Save As")
    assert not _holds_words("Quit Saved Load", "Save")  # a whole word, not a piece of one
    assert not _holds_words("Quit Load", "Save")
    assert not _holds_words("As Save", "Save As")  # in order
    assert not _holds_words("", "Save") and not _holds_words("Save", "")
