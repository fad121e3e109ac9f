"""Issue 15 with fakes: deadlines inside steps, special files, what is refused when a file
loads or before the first step, records that cannot be written, typing pauses, the cache."""

from __future__ import annotations

import errno
import os
import struct
import threading
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deskpilot.actions.executor import RecordingDevice, execute
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import Type
from deskpilot.agent.reports.junit import write_junit
from deskpilot.agent.tasks.act import parking_spot
from deskpilot.agent.tasks.cache import CacheMode, GroundingCache
from deskpilot.agent.tasks.file import TaskFileError, load_task, load_tasks
from deskpilot.agent.tasks.results import SuiteResult, TaskResult, TaskStatus
from deskpilot.agent.tasks.run import run_task
from deskpilot.agent.tasks.spec import DEFAULT_TYPING_INTERVAL_MS, baseline_folder
from deskpilot.grounding.capture import FakeScreen
from deskpilot.grounding.files import UnreadableFile, read_regular_file
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.grounding.ocr import FakeReader
from deskpilot.grounding.visual import ImageError, load_png
from tests.test_taskrun import SAVE, H, W, draw, lines, services, task_file


def finishes(call: Callable[[], Any], within_s: float = 20.0) -> Any:
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it does not return."""
    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(within_s)
    assert not thread.is_alive(), f"still blocked after {within_s}s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- 1. budgets bind inside steps ----------------------------------------------------------

@pytest.mark.parametrize("body", [
    "budget: {timeout_s: 3}\nsteps:\n  - wait: 40\n",
    "budget: {timeout_s: 3}\nsteps:\n  - wait: 1\n  - wait_for: {text: Never, timeout_s: 60}\n",
    "budget: {timeout_s: 3}\nsetup:\n  wait_for: {text: Never, timeout_s: 60}\nsteps:\n"
    "  - wait: 1\n",
    "budget: {timeout_s: 3}\nsteps:\n  - expect_not: {text: Save, timeout_s: 60}\n",
])
def test_no_step_or_setup_wait_runs_past_the_task_deadline(tmp_path: Path, body: str) -> None:
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)))
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is not TaskStatus.PASSED
    assert svc.clock.now() <= 3.0 + 0.31, result.message  # type: ignore[attr-defined]


def test_long_typing_that_cannot_fit_the_budget_types_nothing(tmp_path: Path) -> None:
    body = ("budget: {timeout_s: 5}\nvariables: {long: " + "x" * 20_000 + "}\n"
            "steps:\n  - type: '${long}'\n")
    svc = services(tmp_path, draw(SAVE), FakeReader([]))
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.FAILED
    assert "nothing was typed" in result.message and "5.0s left" in result.message
    assert not [c for c in svc.device.calls if c[0] == "write"]  # type: ignore[attr-defined]


def test_typing_stopped_by_the_deadline_says_how_much_was_typed(tmp_path: Path) -> None:
    class SlowDevice(RecordingDevice):
        def __init__(self, clock: Any) -> None:
            super().__init__()
            self.clock = clock

        def write(self, text: str, interval: float = 0.0) -> None:
            super().write(text, interval)
            self.clock.sleep(len(text) * 0.05)  # an app that takes far longer than estimated

    body = "budget: {timeout_s: 10}\nvariables: {t: " + "y" * 400 + "}\nsteps:\n  - type: '${t}'\n"
    svc = services(tmp_path, draw(SAVE), FakeReader([]))
    svc.device = SlowDevice(svc.clock)
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.FAILED
    assert "ran out after typing 200 of 400 characters" in result.message


# --- 2. special files ----------------------------------------------------------------------

def test_the_helper_refuses_fifos_devices_directories_and_oversize(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "zero"
    link.symlink_to("/dev/zero")
    big = tmp_path / "big"
    big.write_bytes(b"a" * 2000)
    for path, why in [(fifo, "FIFO"), (link, "character device"), (tmp_path, "directory"),
                      (big, "larger than 1000")]:
        with pytest.raises(UnreadableFile, match=why):
            finishes(lambda path=path: read_regular_file(path, 1000))
    assert read_regular_file(big, 4000) == b"a" * 2000


@pytest.mark.parametrize("make", ["fifo", "zero", "dir"])
def test_a_task_file_that_is_not_a_regular_file_is_a_problem_not_a_hang(tmp_path: Path,
                                                                        make: str) -> None:
    path = tmp_path / "t.yaml"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(TaskFileError, match="cannot read it"):
        finishes(lambda: load_task(path))


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "/dev/urandom"])
def test_expect_file_on_a_special_file_fails_its_step_quickly(tmp_path: Path,
                                                              target: str) -> None:
    if target == "fifo":
        os.mkfifo(tmp_path / "out")
    else:
        (tmp_path / "out").symlink_to(target)
    body = "steps:\n  - expect_file: {path: out, contains: never}\n"
    svc = services(tmp_path, draw(SAVE), FakeReader([]))
    result = finishes(lambda: run_task(load_task(task_file(tmp_path, body)), svc))
    assert result.status is TaskStatus.FAILED
    assert "not a regular file" in result.message


def test_a_cache_entry_that_is_a_fifo_costs_a_fresh_grounding(tmp_path: Path) -> None:
    body = "steps:\n  - click: Save\n"
    path = task_file(tmp_path, body)
    run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader(lines(SAVE))))
    cache = tmp_path / "cache"
    for entry in cache.glob("*.json"):
        entry.unlink()
        os.mkfifo(entry)
    result = finishes(lambda: run_task(load_task(path), services(tmp_path, draw(SAVE),
                                                                 FakeReader(lines(SAVE)))))
    assert result.status is TaskStatus.PASSED and "found 'Save'" in result.steps[0].message


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size and holds no pixels (enough for a reader to trust it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


@pytest.mark.parametrize("kind", ["text", "empty", "directory", "huge", "fifo"])
def test_a_baseline_that_is_not_an_image_fails_the_step_with_a_reason(tmp_path: Path,
                                                                      kind: str) -> None:
    folder = tmp_path / "baselines" / "t"
    folder.mkdir(parents=True)
    baseline = folder / "home.png"
    if kind == "text":
        baseline.write_text("not a picture")
    elif kind == "empty":
        baseline.write_bytes(b"")
    elif kind == "directory":
        baseline.mkdir()
    elif kind == "huge":
        baseline.write_bytes(_png_header(20000, 20000))
    else:
        os.mkfifo(baseline)
    with pytest.raises(ImageError):
        finishes(lambda: load_png(baseline))
    body = "steps:\n  - screenshot: {name: home, compare: true}\n"
    svc = services(tmp_path, draw(SAVE), FakeReader([]))
    result = finishes(lambda: run_task(load_task(task_file(tmp_path, body)), svc))
    assert result.status is TaskStatus.FAILED
    assert "the baseline cannot be used" in result.message and "Traceback" not in result.message


# --- 3. refused when the file loads, or before the first step ------------------------------

def test_deep_nesting_is_a_problem_with_a_line_not_a_recursion_error(tmp_path: Path) -> None:
    for text in ("[" * 10_000 + "]" * 10_000, "name: t\nsteps:\n  - a: " + "{b: " * 5000 + "c"
                 + "}" * 5000):
        path = tmp_path / "deep.yaml"
        path.write_text(text)
        with pytest.raises(TaskFileError, match=r"deep\.yaml:\d+: yaml: nested deeper"):
            load_task(path)


def test_duplicate_keys_at_any_depth_are_refused_with_their_lines(tmp_path: Path) -> None:
    path = task_file(tmp_path, "steps:\n  - click: {text: Save, text: Load}\n"
                               "budget: {timeout_s: 5}\nbudget: {timeout_s: 50}\n")
    with pytest.raises(TaskFileError) as info:
        load_task(path)
    problems = info.value.problems
    assert any(":3: text: duplicate key" in p for p in problems), problems
    assert any(":5: budget: duplicate key (first given on line 4)" in p for p in problems)


@pytest.mark.parametrize("text", ["ab\\x1bc", "\\x00", "a\\bb", "\\u009b31m", "x\\x7f"])
def test_control_characters_in_type_are_refused_when_the_file_loads(tmp_path: Path,
                                                                    text: str) -> None:
    path = task_file(tmp_path, f'steps:\n  - click: Save\n  - type: "{text}"\n')
    with pytest.raises(TaskFileError, match=r":4: steps\[1\]\.type.*control character"):
        load_task(path)
    fine = task_file(tmp_path, 'steps:\n  - type: "two\\nlines\\tand a tab"\n', name="ok")
    load_task(fine)


@pytest.mark.parametrize("step", [
    "click: {at: [5000, 10]}",
    "click: {text: Save, region: [700, 500, 900, 700]}",
    "expect: {text: Save, region: [0, 0, 801, 10]}",
    "scroll: {at: [10, 600]}",
    "screenshot: {name: x, region: [900, 900, 1000, 1000]}",
])
def test_points_and_regions_off_the_screen_fail_before_the_first_step(tmp_path: Path,
                                                                      step: str) -> None:
    path = task_file(tmp_path, f"steps:\n  - click: Save\n  - {step}\n")
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)))
    result = run_task(load_task(path), svc)
    assert result.status is TaskStatus.ERROR and result.steps == ()
    assert "step 2 (line 4)" in result.message and f"{W}x{H} screen" in result.message
    assert not [c for c in svc.device.calls if c[0] != "button_up" and c[0] != "key_up"]  # type: ignore[attr-defined]


def test_an_inverted_region_is_refused_when_the_file_loads(tmp_path: Path) -> None:
    path = task_file(tmp_path, "steps:\n  - expect: {text: a, region: [300, 10, 100, 50]}\n")
    with pytest.raises(TaskFileError, match="x1 < x2"):
        load_task(path)


def test_names_that_differ_in_letters_a_folder_cannot_hold_get_folders_of_their_own(
        tmp_path: Path) -> None:
    names = ["Café", "Cafè", "計算", "電卓", "a/b", "a:b"]
    assert len({baseline_folder(n) for n in names}) == len(names)
    assert baseline_folder("xcalc adds 7 and 8") == "xcalc-adds-7-and-8"  # unchanged
    a = task_file(tmp_path, "steps:\n  - wait: 0\n", name="Calc")
    b = tmp_path / "b.yaml"
    b.write_text("name: calc\nsteps:\n  - wait: 0\n")
    with pytest.raises(TaskFileError, match="same folder as 'Calc'"):
        load_tasks([a, b])


# --- 5. records that cannot be written ------------------------------------------------------

def test_no_click_after_a_screenshot_could_not_be_written(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from deskpilot.agent import rundir

    def full(path: Path, rgb: np.ndarray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(rundir, "_write_png", full)
    body = "steps:\n  - click: Save\n  - click: Load\n"
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)))
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.FAILED and len(result.steps) == 1
    assert "could not be written" in result.message
    assert not [c for c in svc.device.calls if c[0] == "button_down"]  # type: ignore[attr-defined]


def test_a_step_list_that_cannot_be_written_ends_the_task_without_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deskpilot.agent import rundir

    real = rundir._private_write

    def full(path: Path, data: bytes, *, append: bool = False) -> None:
        if path.name == "steps.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, append=append)

    monkeypatch.setattr(rundir, "_private_write", full)
    body = "steps:\n  - click: Save\n  - click: Load\n"
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)))
    result = run_task(load_task(task_file(tmp_path, body)), svc)
    assert result.status is TaskStatus.ERROR and "No space left" in result.message
    assert len([c for c in svc.device.calls if c[0] == "button_down"]) == 1  # type: ignore[attr-defined]


def test_junit_is_well_formed_whatever_the_file_name_holds(tmp_path: Path) -> None:
    odd = tmp_path / "a\x1b[31mb\x07c\udcff.yaml"
    suite = SuiteResult((TaskResult("n\x00ame", odd, TaskStatus.FAILED, "m\x1b", (), 1.0,
                                    None),), 1.0, "now", ":1", (W, H), False)
    out = tmp_path / "junit.xml"
    write_junit(out, suite)
    case = ET.parse(out).getroot().find("testsuite/testcase")
    assert case is not None and "\x1b" not in (case.get("classname") or "")


def test_a_full_disk_while_writing_reports_is_one_line_and_nothing_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    from deskpilot.agent.cli.console import print_suite
    from deskpilot.agent.reports.outputs import Outputs
    from deskpilot.grounding import visual

    suite = SuiteResult((), 0.0, "now", ":1", (W, H), False)
    out = tmp_path / "junit.xml"

    real_fdopen = os.fdopen

    class FullFile:
        """A file on a full disk: every write fails."""

        def __init__(self, fd: int) -> None:
            self.fh = real_fdopen(fd, "wb")

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(visual.os, "fdopen", lambda fd, mode: FullFile(fd))
    code = print_suite(suite, Outputs(junit=out))
    err = capsys.readouterr().err
    assert code == 1 and "cannot write" in err and "No space left" in err
    assert "Traceback" not in err and not out.exists()
    assert not list(tmp_path.glob(".junit.xml.*"))


# --- 11. typing pauses ---------------------------------------------------------------------

def test_typing_pause_comes_from_the_step_the_task_or_the_default(tmp_path: Path) -> None:
    body = ("typing: {interval_ms: 35}\nsteps:\n  - type: abc\n"
            "  - type: {text: def, interval_ms: 0}\n")
    svc = services(tmp_path, draw(SAVE), FakeReader([]))
    assert run_task(load_task(task_file(tmp_path, body)), svc).status is TaskStatus.PASSED
    assert svc.device.intervals == [0.035, 0.0]  # type: ignore[attr-defined]
    svc = services(tmp_path, draw(SAVE), FakeReader([]))
    run_task(load_task(task_file(tmp_path, "steps:\n  - type: abc\n", name="d")), svc)
    assert svc.device.intervals == [DEFAULT_TYPING_INTERVAL_MS / 1000]  # type: ignore[attr-defined]
    with pytest.raises(TaskFileError, match="interval_ms"):
        load_task(task_file(tmp_path, "steps:\n  - type: {text: a, interval_ms: -1}\n", "e"))


# --- 4. text the keyboard cannot type: whole or nothing ------------------------------------

def test_a_device_that_cannot_type_a_character_types_none_of_the_text() -> None:
    class Ascii(RecordingDevice):
        def untypeable(self, text: str) -> str:
            return "".join(sorted({c for c in text if ord(c) > 127}))

    device = Ascii()
    text = "a" * 40 + "é" + "b" * 40  # the é is in the second chunk of 32
    with pytest.raises(ValueError, match="nothing was typed"):
        execute(Resolved(Type(action="type", text=text), ()), device)
    assert not [c for c in device.calls if c[0] == "write"]


# --- 13. the grounding cache ---------------------------------------------------------------

def test_the_same_text_twice_in_a_task_gets_two_entries_and_replays_read_only(
        tmp_path: Path) -> None:
    body = "steps:\n  - click: Save\n  - click: Load\n  - click: Save\n"
    path = task_file(tmp_path, body)
    first = run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader(lines(SAVE))))
    assert first.status is TaskStatus.PASSED
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3
    again = run_task(load_task(path), services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)),
                                               mode=CacheMode.READ_ONLY))
    assert again.status is TaskStatus.PASSED, again.message
    assert all("cache hit" in s.message for s in again.steps)


def hover_screen(device: RecordingDevice) -> FakeScreen:
    """A screen that shows a tooltip over whatever button the pointer rests on."""
    plain = draw(SAVE)

    def frame(n: int) -> np.ndarray:
        x, y = device.position
        shown = plain.copy()
        for bx, by in SAVE.values():
            if bx <= x < bx + 80 and by <= y < by + 30:
                shown[by + 12:by + 40, bx + 30:bx + 120] = (255, 255, 160)  # over the label
        return shown

    return FakeScreen(frame, ScreenGeometry(0, 0, W, H))


def test_the_pointer_is_parked_before_a_crop_so_no_tooltip_is_cached(tmp_path: Path) -> None:
    device = RecordingDevice(position=(124, 114))  # resting on Save, as after a click
    svc = services(tmp_path, draw(SAVE), FakeReader(lines(SAVE)), device=device)
    svc.screen = hover_screen(device)
    result = run_task(load_task(task_file(tmp_path, "steps:\n  - click: Save\n")), svc)
    assert result.status is TaskStatus.PASSED
    assert ("move", *parking_spot(W, H)) in device.calls
    (entry,) = GroundingCache(tmp_path / "cache", CacheMode.READ_ONLY).directory.glob("*.png")
    crop = load_png(entry)
    assert not (crop == (255, 255, 160)).all(axis=2).any()  # no tooltip pixel in the crop
