"""Task runs with fakes: a drawn screen, scripted OCR, a scripted model and a recording device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from deskpilot.actions.executor import RecordingDevice
from deskpilot.agent.settings import ModelSettings
from deskpilot.agent.tasks.act import parking_spot
from deskpilot.agent.tasks.cache import CacheMode
from deskpilot.agent.tasks.file import load_task
from deskpilot.agent.tasks.kit import ModelAccess
from deskpilot.agent.tasks.results import Source, TaskStatus
from deskpilot.agent.tasks.run import Services, run_task
from deskpilot.grounding.capture import FakeScreen
from deskpilot.grounding.ocr import FakeReader, TextBox, TextLine
from deskpilot.models.grounder import GroundingPrompt
from deskpilot.models.runtime import Mode, Reply
from deskpilot.models.scripted import ScriptedRuntime
from tests.helpers.fakes import FakeClock

W, H = 800, 600
BUTTON = (80, 30)


def draw(buttons: dict[str, tuple[int, int]], *, fill: str = "#dddddd") -> np.ndarray:
    """A grey screen with labelled, outlined buttons at the given top-left corners."""
    image = Image.new("RGB", (W, H), "#808080")
    pen = ImageDraw.Draw(image)
    for i, (label, (x, y)) in enumerate(buttons.items()):
        pen.rectangle((x, y, x + BUTTON[0], y + BUTTON[1]), fill=fill, outline="black", width=2)
        pen.text((x + 10 + 3 * i, y + 8), label, fill="black")
        pen.line((x + 5, y + 25, x + 20 + 7 * i, y + 25), fill="#204080", width=2)
    return np.asarray(image)


def lines(buttons: dict[str, tuple[int, int]]) -> list[TextLine]:
    """What OCR would read off :func:`draw`'s buttons."""
    out = []
    for label, (x, y) in buttons.items():
        box = (x + 10, y + 8, x + 10 + 7 * len(label), y + 20)
        out.append(TextLine(label, box, 0.99, (TextBox(label, box, 0.99),)))
    return out


def centre(x: int, y: int) -> tuple[int, int]:
    """Where a click on a button drawn at (x, y) lands (the centre of its text box)."""
    box = (x + 10, y + 8, x + 10 + 7 * 4, y + 20)
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def task_file(tmp_path: Path, body: str, name: str = "t") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    return path


def services(tmp_path: Path, screen: np.ndarray, reader: FakeReader, *,
             mode: CacheMode = CacheMode.READ_WRITE, runtime: ScriptedRuntime | None = None,
             device: RecordingDevice | None = None) -> Services:
    return Services(
        screen=FakeScreen(screen), device=device or RecordingDevice(), reader=reader,
        cache_mode=mode, cache_dir=tmp_path / "cache",
        model=ModelAccess(None if runtime is None else (lambda: runtime),
                          ModelSettings(max_patches=256, grounding=GroundingPrompt.JOINT)),
        clock=FakeClock(), display=":none", runs_root=tmp_path / "runs")


def moves(device: RecordingDevice) -> list[tuple[int, int]]:
    """The pointer moves that aimed at something (not those parking it while grounding)."""
    return [(c[1], c[2]) for c in device.calls
            if c[0] == "move" and (c[1], c[2]) != parking_spot(W, H)]


SAVE = {"Save": (100, 100), "Load": (300, 100), "Quit": (500, 100)}


def test_click_by_text_clicks_the_ocr_box_and_records_the_source(tmp_path: Path) -> None:
    path = task_file(tmp_path, "steps:\n  - click: Save\n")
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)))
    result = run_task(load_task(path), svc)
    assert result.status is TaskStatus.PASSED, result.message
    step = result.steps[0]
    assert step.source is Source.OCR and "cached" in step.message
    assert moves(svc.device) == [centre(100, 100)]  # type: ignore[arg-type]
    assert step.point == centre(100, 100)
    assert result.run_dir is not None and (result.run_dir / str(step.screenshot)).is_file()
    records = (result.run_dir / "steps.jsonl").read_text().splitlines()
    assert json.loads(records[0])["source"] == "ocr"


def test_cache_hit_relocates_a_moved_target_reading_only_its_label(tmp_path: Path) -> None:
    path = task_file(tmp_path, "steps:\n  - click: Save\n")
    run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader(lines(SAVE))))
    moved = {k: (x + 40, y + 25) for k, (x, y) in SAVE.items()}
    reader = FakeReader(lines(moved))
    svc = services(tmp_path, draw(moved), reader, mode=CacheMode.READ_ONLY)
    result = run_task(load_task(path), svc)
    assert result.status is TaskStatus.PASSED, result.message
    step = result.steps[0]
    assert step.source is Source.CACHE and "relocated by (40, 25)" in step.message
    assert moves(svc.device) == [centre(140, 125)]  # type: ignore[arg-type]
    # No full-screen read grounded it: the label re-read on the found crop, and the safety
    # policy's small read around the click, are all.
    assert None not in reader.calls and len(reader.calls) <= 3


def test_stale_cache_in_read_only_mode_refuses_and_never_clicks(tmp_path: Path) -> None:
    path = task_file(tmp_path, "steps:\n  - click: Save\n")
    run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader(lines(SAVE))))
    gone = {"Load": (300, 100), "Quit": (500, 100)}
    # OCR misreads something as "Save": a cache that trusted position alone would click there.
    liar = FakeReader(lines({"Save": (100, 100)}))
    svc = services(tmp_path, draw(gone), liar, mode=CacheMode.READ_ONLY)
    result = run_task(load_task(path), svc)
    assert result.status is TaskStatus.FAILED
    assert "refusing to click" in result.steps[0].message
    assert moves(svc.device) == []  # type: ignore[arg-type]
    assert all(c[0] in {"button_up", "key_up", "move"}  # the move parks the pointer only
               for c in svc.device.calls)  # type: ignore[attr-defined]
    assert liar.calls == []


def test_stale_cache_in_read_write_mode_falls_back_to_grounding_and_restores(
        tmp_path: Path) -> None:
    path = task_file(tmp_path, "steps:\n  - click: Save\n")
    run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader(lines(SAVE))))
    restyled = {"Load": (300, 100), "Save": (120, 300)}  # drawn differently: 2nd button
    svc = services(tmp_path, draw(restyled, fill="#a0e0a0"), FakeReader(lines(restyled)))
    result = run_task(load_task(path), svc)
    step = result.steps[0]
    assert result.status is TaskStatus.PASSED, result.message
    assert step.source is Source.OCR and "stale" in step.message and "cached" in step.message
    assert moves(svc.device) == [centre(120, 300)]  # type: ignore[arg-type]


def test_ambiguous_text_fails_with_its_candidates_and_a_region_settles_it(
        tmp_path: Path) -> None:
    two = {"OK": (100, 100), "OK ": (100, 400)}
    reader = FakeReader([TextLine("OK", b, 0.9, ()) for b in
                         ((110, 108, 130, 120), (110, 408, 130, 420))])
    path = task_file(tmp_path, "steps:\n  - click: OK\n")
    result = run_task(load_task(path), services(tmp_path, draw(two), reader,
                                                mode=CacheMode.OFF))
    assert result.status is TaskStatus.FAILED
    assert len(result.steps[0].candidates) == 2
    path = task_file(tmp_path, "steps:\n  - click: {text: OK, region: [0, 300, 800, 600]}\n",
                     name="t2")
    svc = services(tmp_path, draw(two), reader, mode=CacheMode.OFF)
    assert run_task(load_task(path), svc).status is TaskStatus.PASSED
    assert moves(svc.device) == [(120, 414)]  # type: ignore[arg-type]


def test_failed_expectation_stops_the_task_and_keeps_a_screenshot(tmp_path: Path) -> None:
    path = task_file(tmp_path, "steps:\n  - expect: {text: Total}\n  - click: Save\n")
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)))
    result = run_task(load_task(path), svc)
    assert result.status is TaskStatus.FAILED and len(result.steps) == 1
    failed = result.failed_step
    assert failed is not None and "no text" in failed.message and "waited 3s" in failed.message
    assert failed.screenshot and result.run_dir is not None
    assert (result.run_dir / failed.screenshot).is_file()
    assert "step 1 (expect: {text: 'Total'}, line 3)" in result.message
    assert moves(svc.device) == []  # type: ignore[arg-type]


def test_model_target_query_and_check_go_through_the_scripted_model(tmp_path: Path) -> None:
    body = ("steps:\n"
            "  - click: {target: the load button}\n"
            "  - query: {ask: what is the second button called, save_as: label}\n"
            "  - expect: {text: '${label}'}\n"
            "  - check: there are three buttons\n")
    runtime = ScriptedRuntime([
        '{"action": "click", "box": [0.375, 0.1666, 0.475, 0.2166]}',
        '{"value": "Load"}',
        Reply(answer="yes", reasoning="I count Save, Load and Quit."),
    ])
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)), runtime=runtime)
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.PASSED, result.message
    click, query, expect, check = result.steps
    assert click.source is Source.MODEL and click.box == (300, 99, 380, 129)
    assert moves(svc.device) == [(340, 114)]  # type: ignore[arg-type]
    assert query.message == "label = 'Load'"
    assert expect.passed and "'Load' is on the screen" in expect.message
    assert "I count" in check.model_text
    modes = [r.mode for r in runtime.requests]
    assert modes == [Mode.DIRECT, Mode.DIRECT, Mode.REASONING]
    assert all("<image>" in r.prompt and r.grammar for r in runtime.requests)


def test_a_no_verdict_fails_the_check(tmp_path: Path) -> None:
    runtime = ScriptedRuntime([Reply(answer="no", reasoning="There are two.")])
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)), runtime=runtime)
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - check: five buttons\n")), svc)
    assert result.status is TaskStatus.FAILED
    assert "does not hold" in result.steps[0].message


def test_model_step_without_a_model_fails_clearly(tmp_path: Path) -> None:
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)))
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - check: anything\n")), svc)
    assert result.status is TaskStatus.FAILED
    assert "needs the vision model" in result.steps[0].message


def test_secret_is_typed_but_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    canary = "canary-7f3a9e1c"
    monkeypatch.setenv("DESKPILOT_TEST_PW", canary)
    body = ("variables:\n  pw: ${env:DESKPILOT_TEST_PW}\n"
            "steps:\n  - type: 'pw=${pw}'\n  - expect: {text: '${pw}'}\n")
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)))
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert ("write", f"pw={canary}") in svc.device.calls  # type: ignore[attr-defined]
    assert result.status is TaskStatus.FAILED  # the canary is not on the screen
    assert canary not in result.message
    assert result.run_dir is not None
    for path in result.run_dir.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path


def test_visual_regression_records_then_passes_then_catches_a_change(tmp_path: Path) -> None:
    body = "steps:\n  - screenshot: {name: home, compare: true}\n"
    path = task_file(tmp_path, body)
    first = run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader([])))
    assert first.status is TaskStatus.PASSED and "recorded" in first.steps[0].message
    assert (tmp_path / "baselines" / "t" / "home.png").is_file()
    same = run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader([])))
    assert same.status is TaskStatus.PASSED, same.message
    changed = draw({**SAVE, "Quit": (520, 100)})
    third = run_task(load_task(path), services(tmp_path, changed, FakeReader([])))
    assert third.status is TaskStatus.FAILED
    step = third.steps[0]
    assert step.diff and third.run_dir is not None and (third.run_dir / step.diff).is_file()
    assert step.box is not None and 490 <= step.box[0] <= 530


def test_missing_setup_program_is_an_error_not_a_failure(tmp_path: Path) -> None:
    body = "setup:\n  launch: [no-such-program-deskpilot --x]\nsteps:\n  - wait: 1\n"
    result = run_task(load_task(task_file(tmp_path, body)),
                      services(tmp_path, draw(SAVE), FakeReader([])))
    assert result.status is TaskStatus.ERROR
    assert "no-such-program-deskpilot is not installed" in result.message


def test_the_task_timeout_ends_the_task_inside_the_step_that_reaches_it(tmp_path: Path) -> None:
    body = "budget: {timeout_s: 2}\nsteps:\n  - wait: 1.5\n  - wait: 1.5\n  - wait: 1.5\n"
    svc = services(tmp_path, draw(SAVE), FakeReader([]))
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.FAILED
    assert len(result.steps) == 2 and "waited 0.5s of 1.5s" in result.message
    assert svc.clock.now() <= 2.0  # type: ignore[attr-defined]


def test_expect_file_resolves_relative_paths_against_the_task_file(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text("total: 15\n")
    body = ("steps:\n  - expect_file: {path: out.txt, contains: 'total: 15'}\n"
            "  - expect_file: {path: out.txt, contains: 'total: 16'}\n")
    result = run_task(load_task(task_file(tmp_path, body)),
                      services(tmp_path, draw(SAVE), FakeReader([])))
    assert [s.passed for s in result.steps] == [True, False]
    assert "does not contain" in result.steps[1].message


def test_do_runs_the_agent_loop_and_keeps_its_steps_with_their_screenshots(
        tmp_path: Path) -> None:
    runtime = ScriptedRuntime([
        '{"action": "click", "target": "Quit", "box": [0.625, 0.1666, 0.725, 0.2166]}',
        '{"action": "done", "answer": "quit pressed"}',
    ])
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)), runtime=runtime)
    body = "budget: {max_steps: 5}\nsteps:\n  - do: press the quit button\n"
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.PASSED, result.message
    step = result.steps[0]
    assert step.source is Source.MODEL and len(step.agent_steps) == 2
    assert "done after 2 agent steps: quit pressed" in step.message
    assert moves(svc.device) == [(540, 114)]  # type: ignore[arg-type]
    assert result.run_dir is not None
    for sub in step.agent_steps:
        assert sub.screenshot and (result.run_dir / sub.screenshot).is_file()
    assert "press the quit button" in runtime.requests[0].prompt


def test_a_do_step_that_runs_out_of_steps_fails(tmp_path: Path) -> None:
    wait = '{"action": "wait", "seconds": 0.1}'
    runtime = ScriptedRuntime([wait] * 3)
    svc = services(tmp_path, draw(SAVE), FakeReader([]), runtime=runtime)
    body = "budget: {max_steps: 3}\nsteps:\n  - do: something endless\n"
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.FAILED
    assert result.steps[0].message.startswith("max_steps after 3 agent steps")


def test_failed_expectation_outlines_the_searched_region(tmp_path: Path) -> None:
    body = "steps:\n  - expect: {text: Total, region: [0, 0, 400, 300], timeout_s: 1}\n"
    result = run_task(load_task(task_file(tmp_path, body)),
                      services(tmp_path, draw(SAVE), FakeReader(lines(SAVE))))
    assert result.steps[0].box == (0, 0, 400, 300)


def test_a_broken_runtime_or_device_is_an_error_of_that_task_only(tmp_path: Path) -> None:
    runtime = ScriptedRuntime([])  # exhausted at once: RuntimeFailure
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)), runtime=runtime)
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - check: x\n")), svc)
    assert result.status is TaskStatus.ERROR
    assert result.message.startswith("the model runtime failed: scripted: script exhausted")

    broken = RecordingDevice(fail_at=[0])
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)), device=broken)
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - click: Save\n", name="u")),
                      svc)
    assert result.status is TaskStatus.ERROR and "injected failure" in result.message
    assert broken.buttons_down == [] and broken.keys_down == []


def test_sensitive_key_is_denied_headless_unless_the_task_allows_it(tmp_path: Path) -> None:
    svc = services(tmp_path, draw(SAVE), FakeReader([]))
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - key: ctrl+alt+t\n")), svc)
    assert result.status is TaskStatus.FAILED
    assert "not approved (sensitive_keys)" in result.steps[0].message
    assert not [c for c in svc.device.calls if c[0] == "key_down"]  # type: ignore[attr-defined]
    assert result.run_dir is not None
    incident = json.loads((result.run_dir / "incidents.jsonl").read_text().splitlines()[0])
    assert incident["verdict"] == "denied" and incident["category"] == "sensitive_keys"

    body = "allow: [sensitive_keys]\nsteps:\n  - key: ctrl+alt+t\n"
    svc = services(tmp_path, draw(SAVE), FakeReader([]))
    result = run_task(load_task(task_file(tmp_path, body, name="u")), svc)
    assert result.status is TaskStatus.PASSED, result.message
    assert ("key_down", "t") in svc.device.calls  # type: ignore[attr-defined]


def test_clicking_delete_needs_approval_and_scope_refuses_outside(tmp_path: Path) -> None:
    buttons = {"Delete": (100, 100), "Cancel": (300, 100)}
    svc = services(tmp_path, draw(buttons), FakeReader(lines(buttons)), mode=CacheMode.OFF)
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - click: Delete\n")), svc)
    assert result.status is TaskStatus.FAILED
    assert "sensitive_clicks" in result.steps[0].message
    assert moves(svc.device) == []  # type: ignore[arg-type]

    body = ("scope: {region: [250, 0, 800, 600]}\n"
            "steps:\n  - click: Cancel\n  - click: {at: [50, 50]}\n")
    svc = services(tmp_path, draw(buttons), FakeReader(lines(buttons)), mode=CacheMode.OFF)
    result = run_task(load_task(task_file(tmp_path, body, name="u")), svc)
    assert [s.passed for s in result.steps] == [True, False]
    assert "refused (out_of_region)" in result.steps[1].message
    assert len(moves(svc.device)) == 1  # type: ignore[arg-type]


def test_a_target_that_is_not_found_keeps_its_screenshot_and_the_closest_texts(
        tmp_path: Path) -> None:
    path = task_file(tmp_path, "steps:\n  - click: Savings account\n")
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)), mode=CacheMode.OFF)
    result = run_task(load_task(path), svc)
    step = result.steps[0]
    assert not step.passed and step.box is None and step.point is None
    assert result.run_dir is not None and step.screenshot is not None
    assert (result.run_dir / step.screenshot).is_file()
    # The closest texts come with their boxes, so the report can outline them.
    assert step.candidates[0].text == "Save"
    assert step.candidates[0].box == lines(SAVE)[0].box
    assert svc.device.calls == [] or all(  # type: ignore[attr-defined]
        c[0] in {"button_up", "key_up"} for c in svc.device.calls)  # type: ignore[attr-defined]
    line = json.loads((result.run_dir / "steps.jsonl").read_text().splitlines()[0])
    assert line["candidates"][0] == {"text": "Save", "box": list(lines(SAVE)[0].box), "via": "ocr"}


def test_every_failed_step_has_a_screenshot(tmp_path: Path) -> None:
    body = "steps:\n  - expect_file: {path: missing.txt}\n"
    result = run_task(load_task(task_file(tmp_path, body)),
                      services(tmp_path, draw(SAVE), FakeReader([])))
    step = result.steps[0]
    assert not step.passed and step.screenshot is not None
    assert result.run_dir is not None and (result.run_dir / step.screenshot).is_file()


def test_labels_show_values_but_not_secrets_and_counts_read_well(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKPILOT_TEST_PW", "hunter2-secret")
    body = ("variables:\n  line: Hello there\n  one: x\n  pw: ${env:DESKPILOT_TEST_PW}\n"
            "steps:\n  - type: '${line}'\n  - type: '${one}'\n  - type: '${pw}'\n")
    result = run_task(load_task(task_file(tmp_path, body)),
                      services(tmp_path, draw(SAVE), FakeReader([])))
    assert result.status is TaskStatus.PASSED, result.message
    labels = [s.label for s in result.steps]
    assert labels == ["type: {text: 'Hello there'}", "type: {text: 'x'}",
                      "type: {text: '[secret]'}"]
    assert [s.message for s in result.steps] == [
        "typed 11 characters", "typed 1 character",
        "typed 14 characters; the secret does not show on the screen"]


def test_a_passing_expect_not_lists_no_candidates(tmp_path: Path) -> None:
    body = "steps:\n  - expect_not: {text: Error}\n  - expect: {text: Zebra, timeout_s: 0.1}\n"
    result = run_task(load_task(task_file(tmp_path, body)),
                      services(tmp_path, draw(SAVE), FakeReader(lines(SAVE))))
    gone, missing = result.steps
    assert gone.passed and gone.candidates == ()
    assert not missing.passed and missing.candidates  # a wanted text: the closest ones explain


def test_a_failed_comparison_keeps_a_copy_of_its_baseline(tmp_path: Path) -> None:
    body = "steps:\n  - screenshot: {name: home, compare: true}\n"
    path = task_file(tmp_path, body)
    run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader([])))
    changed = run_task(load_task(path), services(tmp_path, draw({**SAVE, "Quit": (520, 100)}),
                                                 FakeReader([])))
    step = changed.steps[0]
    assert changed.run_dir is not None and step.baseline is not None
    kept = np.asarray(Image.open(changed.run_dir / step.baseline).convert("RGB"))
    assert (kept == draw(SAVE)).all()


def test_a_comparison_without_a_change_outlines_the_region_it_compared(tmp_path: Path) -> None:
    body = "steps:\n  - screenshot: {name: home, compare: true, region: [50, 60, 450, 200]}\n"
    path = task_file(tmp_path, body)
    run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader([])))
    same = run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader([])))
    assert same.status is TaskStatus.PASSED and same.steps[0].box == (50, 60, 450, 200)
