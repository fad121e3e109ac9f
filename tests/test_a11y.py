"""Accessibility grounding with fakes: names and roles, the tree before OCR, the gate's reuse of
the label the step found (reads counted), and a failing step's candidates from both sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskpilot.actions.executor import RecordingDevice
from deskpilot.agent.tasks.cache import CacheMode
from deskpilot.agent.tasks.file import load_task
from deskpilot.agent.tasks.results import Source, TaskStatus
from deskpilot.agent.tasks.run import Services, run_task
from deskpilot.grounding.a11y import (
    A11yElement,
    A11yLookupError,
    FakeTree,
    element_at,
    find_element,
    role_matches,
)
from deskpilot.grounding.ocr import FakeReader
from tests.test_taskrun import SAVE, draw, lines, services, task_file

BUTTON_YES = A11yElement("Yes", "push button", frozenset({"showing", "visible"}),
                         (300, 100, 380, 130), "Question")
LABEL_YES = A11yElement("Yes", "label", frozenset({"showing", "visible"}),
                        (100, 300, 140, 320), "Question")
QUESTION = A11yElement("Start the tour now?", "label", frozenset({"showing", "visible"}),
                       (100, 40, 400, 60), "Question")
TIMES = A11yElement("\N{MULTIPLICATION SIGN}", "push button",
                    frozenset({"showing", "visible"}), (500, 100, 540, 130), "calc")


@pytest.mark.parametrize(("wanted", "role", "fits"), [
    ("button", "push button", True), ("push button", "push button", True),
    ("Button", "toggle button", True), ("button", "label", False), ("label", "push button", False),
])
def test_a_role_fits_its_last_word(wanted: str, role: str, fits: bool) -> None:
    assert role_matches(wanted, role) is fits


def test_a_name_finds_one_element_and_a_button_beats_a_label_of_the_same_text() -> None:
    items = [BUTTON_YES, LABEL_YES, QUESTION, TIMES]
    assert find_element(items, "yes") is BUTTON_YES
    assert find_element(items, "Yes", role="label") is LABEL_YES
    assert find_element(items, "*") is TIMES  # lookalikes fold: the multiplication sign is "*"
    with pytest.raises(A11yLookupError, match="closest") as info:
        find_element(items, "Yes please")
    assert info.value.candidates[0].name == "Yes"
    with pytest.raises(A11yLookupError, match="2 accessible elements"):
        find_element([BUTTON_YES, BUTTON_YES], "Yes")
    assert find_element(items, "Yes", region=(0, 250, 200, 400)) is LABEL_YES


def test_element_at_takes_the_innermost_box_and_never_a_window() -> None:
    window = A11yElement("Question", "dialog", frozenset(), (0, 0, 800, 600), "Question")
    group = A11yElement("Answer", "label", frozenset(), (0, 0, 800, 200), "Question")
    assert element_at([window, group, BUTTON_YES], 310, 110) is BUTTON_YES
    assert element_at([window, group, BUTTON_YES], 10, 10) is group
    assert element_at([window, BUTTON_YES], 10, 10) is None  # a title is not a label
    assert element_at([BUTTON_YES], 10, 10) is None


def test_a_step_line_targets_the_element() -> None:
    assert BUTTON_YES.step() == 'click: {name: "Yes", role: push button}'


def with_tree(svc: Services, tree: FakeTree) -> Services:
    svc.a11y = tree
    return svc


def steps_of(result_dir: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (result_dir / "steps.jsonl").read_text().splitlines()]


def test_name_and_role_click_the_element_without_any_ocr_read(tmp_path: Path) -> None:
    reader = FakeReader(lines(SAVE))
    device = RecordingDevice()
    svc = with_tree(services(tmp_path, draw(SAVE), reader, device=device,
                             mode=CacheMode.OFF), FakeTree([BUTTON_YES, QUESTION]))
    path = task_file(tmp_path, "allow: []\nsteps:\n  - click: {name: 'Yes', role: button}\n")
    result = run_task(load_task(path), svc)
    assert result.status is TaskStatus.PASSED, result.message
    assert result.steps[0].source is Source.A11Y
    assert ("move", 340, 115) in device.calls
    assert reader.calls == []  # neither the grounding nor the gate read a pixel of text


def test_plain_text_tries_the_tree_first_then_ocr(tmp_path: Path) -> None:
    reader = FakeReader(lines(SAVE))
    svc = with_tree(services(tmp_path, draw(SAVE), reader, mode=CacheMode.OFF),
                    FakeTree([BUTTON_YES]))
    path = task_file(tmp_path, "steps:\n  - click: 'Yes'\n  - click: Save\n")
    result = run_task(load_task(path), svc)
    assert result.status is TaskStatus.PASSED, result.message
    assert [s.source for s in result.steps] == [Source.A11Y, Source.OCR]


def test_a_grounded_ocr_click_is_read_once_the_gate_reuses_it(tmp_path: Path) -> None:
    reader = FakeReader(lines(SAVE))
    svc = services(tmp_path, draw(SAVE), reader, mode=CacheMode.OFF)
    path = task_file(tmp_path, "steps:\n  - click: Save\n")
    result = run_task(load_task(path), svc)
    assert result.status is TaskStatus.PASSED, result.message
    assert reader.calls == [None]  # one full read by the step; none by the gate


def test_the_gate_still_judges_the_element_name_the_tree_gave(tmp_path: Path) -> None:
    delete = A11yElement("Delete", "push button", frozenset({"showing", "visible"}),
                         (300, 100, 380, 130), "Files")
    reader = FakeReader([])
    svc = with_tree(services(tmp_path, draw(SAVE), reader, mode=CacheMode.OFF),
                    FakeTree([delete]))
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - click: Delete\n")), svc)
    assert result.status is TaskStatus.FAILED
    assert "sensitive_clicks" in result.message and '"Delete"' in result.message
    assert reader.calls == []


def test_an_affirmative_is_judged_by_its_window_texts(tmp_path: Path) -> None:
    question = A11yElement("Delete all your photos?", "label",
                           frozenset({"showing", "visible"}), (100, 40, 400, 60), "Question")
    svc = with_tree(services(tmp_path, draw(SAVE), FakeReader([]), mode=CacheMode.OFF),
                    FakeTree([BUTTON_YES, question]))
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - click: 'Yes'\n")), svc)
    assert result.status is TaskStatus.FAILED
    assert "answers" in result.message and "delete" in result.message.lower()


def test_name_without_a_tree_fails_and_says_so(tmp_path: Path) -> None:
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)), mode=CacheMode.OFF)
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - click: {name: Save}\n")), svc)
    assert result.status is TaskStatus.FAILED
    assert "no accessibility tree" in result.message


def test_a_failing_step_names_candidates_of_both_sources_with_their_boxes(
        tmp_path: Path) -> None:
    reader = FakeReader(lines(SAVE))
    svc = with_tree(services(tmp_path, draw(SAVE), reader, mode=CacheMode.OFF),
                    FakeTree([BUTTON_YES]))
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - click: Print\n")), svc)
    assert result.status is TaskStatus.FAILED
    step = result.steps[0]
    by_source = {c.via: c for c in step.candidates}
    assert by_source["a11y push button"].text == "Yes"
    assert by_source["a11y push button"].box == BUTTON_YES.box  # the report outlines these
    assert by_source["ocr"].text == "Save" and by_source["ocr"].box is not None
    assert "(a11y push button)" in str(by_source["a11y push button"])
    assert step.screenshot is not None and (result.run_dir / step.screenshot).is_file()
    recorded = steps_of(result.run_dir)[0]
    assert recorded["screenshot"] == step.screenshot
    assert {c["via"] for c in recorded["candidates"]} == {"ocr", "a11y push button"}


def test_a_cache_hit_verifies_its_label_on_the_tree_without_ocr(tmp_path: Path) -> None:
    svc = with_tree(services(tmp_path, draw(SAVE), FakeReader([])), FakeTree(
        [A11yElement("Save", "push button", frozenset({"showing", "visible"}),
                     (100, 100, 180, 130), "w")]))
    path = task_file(tmp_path, "steps:\n  - click: {name: Save}\n")
    first = run_task(load_task(path), svc)
    assert first.status is TaskStatus.PASSED, first.message
    reader = FakeReader([])
    svc.reader = reader
    again = run_task(load_task(path), svc)
    assert again.status is TaskStatus.PASSED, again.message
    assert again.steps[0].source is Source.CACHE
    assert reader.calls == []


@pytest.mark.parametrize(("name", "role", "judged"), [
    ("Format", "menu", False),            # a spreadsheet's menu: it only opens
    ("Format...", "menu item", False),    # opens the Format Cells dialog, which asks
    ("Delete Sheet\N{HORIZONTAL ELLIPSIS}", "menu item", False),
    ("Delete Sheet", "menu item", True),  # acts at once
    ("Delete...", "push button", True),   # any program can label a button so
    ("Format Disk", "toggle button", True),
])
def test_only_what_opens_a_menu_or_a_dialog_escapes_the_label_check(
        tmp_path: Path, name: str, role: str, judged: bool) -> None:
    element = A11yElement(name, role, frozenset({"showing", "visible"}), (100, 100, 260, 130),
                          "Book1")
    svc = with_tree(services(tmp_path, draw(SAVE), FakeReader([]), mode=CacheMode.OFF),
                    FakeTree([element]))
    step = f"steps:\n  - click: {{name: {json.dumps(name)}}}\n"
    result = run_task(load_task(task_file(tmp_path, step)), svc)
    assert (result.status is TaskStatus.FAILED) is judged, result.message
    if judged:
        assert "sensitive_clicks" in result.message
