"""The loop with a scripted model, a fake screen and a recording input device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deskpilot.actions.executor import RecordingDevice
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import Outcome, Status
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.settings import Budget, ModelSettings
from deskpilot.grounding.capture import FakeScreen
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.models.grounder import GroundingPrompt
from deskpilot.models.runtime import Reply, Request, RuntimeFailure
from deskpilot.models.scripted import ScriptedRuntime
from tests.helpers.fakes import JOINT_SETTINGS, FakeClock

CLICK_CENTRE = '{"action": "click", "target": "middle", "box": [0.4, 0.4, 0.6, 0.6]}'
DONE = '{"action": "done", "answer": "42"}'


def _screen() -> FakeScreen:
    return FakeScreen(np.zeros((600, 800, 3), np.uint8))


def _run(tmp_path: Path, replies: list[str], **kw: object):
    runtime = kw.pop("runtime", None) or ScriptedRuntime(replies)
    device = kw.pop("device", RecordingDevice())
    kw.setdefault("settings", JOINT_SETTINGS)  # these tests script single joint answers
    result = run_agent("test task", runtime=runtime, screen=kw.pop("screen", _screen()),
                       device=device, record=RunDir(tmp_path), clock=kw.pop("clock", FakeClock()),
                       **kw)  # type: ignore[arg-type]
    return result, runtime, device


def _trajectory(result) -> list[dict]:
    return [json.loads(line) for line in (result.run_dir / "trajectory.jsonl").read_text()
            .splitlines()]


def test_click_then_done(tmp_path: Path) -> None:
    result, runtime, device = _run(tmp_path, [CLICK_CENTRE, DONE])
    assert result.status is Status.DONE and result.answer == "42"
    assert ("move", 400, 300) in device.calls
    assert device.calls[-2:] == [("button_down", "left"), ("button_up", "left")]
    assert [s.outcome for s in result.steps] == [Outcome.EXECUTED, Outcome.TERMINAL]
    lines = _trajectory(result)
    assert lines[0]["action"]["action"] == "click" and lines[0]["points"] == [[400, 300]]
    assert (result.run_dir / lines[0]["screenshot"]).is_file()
    assert json.loads((result.run_dir / "result.json").read_text())["status"] == "done"
    # The second prompt recalls the first step; the image is always last.
    assert "1. click" in runtime.requests[1].prompt
    assert runtime.requests[1].prompt.rstrip().endswith("<image>\nNext action:")


def test_invalid_reply_goes_back_to_the_model(tmp_path: Path) -> None:
    result, runtime, device = _run(tmp_path, ["not json", CLICK_CENTRE, DONE])
    assert result.status is Status.DONE
    assert result.steps[0].outcome is Outcome.REJECTED
    assert "must start with '{'" in runtime.requests[1].prompt
    assert "could not be used" not in runtime.requests[2].prompt
    assert sum(c[0] == "button_down" for c in device.calls) == 1


def test_consecutive_failures_end_the_run(tmp_path: Path) -> None:
    corner = '{"action": "click", "box": [0, 0, 0, 0]}'
    result, _, device = _run(tmp_path, [corner, "{}", "[]", DONE],
                             budget=Budget(max_consecutive_errors=3))
    assert result.status is Status.TOO_MANY_ERRORS
    assert "3 unusable or refused replies in a row" in result.message
    assert device.calls == []  # nothing partial ever reached the device


def test_step_budget(tmp_path: Path) -> None:
    result, _, _ = _run(tmp_path, [CLICK_CENTRE] * 5,
                        budget=Budget(max_steps=3, max_repeats=10))
    assert result.status is Status.MAX_STEPS and len(result.steps) == 3


def test_time_budget_counts_waits(tmp_path: Path) -> None:
    wait = '{"action": "wait", "seconds": 20}'
    clock = FakeClock()
    result, _, _ = _run(tmp_path, [wait] * 5, clock=clock, budget=Budget(max_seconds=30))
    assert result.status is Status.TIMEOUT
    assert clock.slept == [20, 20]


def test_runtime_failure_aborts(tmp_path: Path) -> None:
    result, _, _ = _run(tmp_path, [CLICK_CENTRE])  # the script runs out on step 2
    assert result.status is Status.RUNTIME_ERROR and "exhausted" in result.message


def test_dry_run_never_touches_the_device(tmp_path: Path) -> None:
    runtime = ScriptedRuntime([CLICK_CENTRE, DONE])
    result = run_agent("t", runtime=runtime, screen=_screen(), device=None,
                       record=RunDir(tmp_path), clock=FakeClock(), settings=JOINT_SETTINGS)
    assert [s.outcome for s in result.steps] == [Outcome.DRY_RUN, Outcome.TERMINAL]


def test_input_failure_ends_run_with_nothing_held(tmp_path: Path) -> None:
    device = RecordingDevice(fail_at=[2])  # move, button_down, then button_up raises
    result, _, _ = _run(tmp_path, [CLICK_CENTRE, DONE], device=device)
    assert result.status is Status.INPUT_ERROR
    assert device.buttons_down == [] and device.keys_down == []


def test_fail_and_ask_user_end_the_run(tmp_path: Path) -> None:
    fail = '{"action": "fail", "reason": "no such file"}'
    assert _run(tmp_path / "a", [fail])[0].status is Status.FAILED
    ask = '{"action": "ask_user", "question": "which file?"}'
    result = _run(tmp_path / "b", [ask])[0]
    assert result.status is Status.ASKED_USER and result.message == "which file?"


def test_hidpi_screen_maps_to_points(tmp_path: Path) -> None:
    geometry = ScreenGeometry(-1440, 0, 1440, 900, scale=2.0)
    screen = FakeScreen(np.zeros((1800, 2880, 3), np.uint8), geometry)
    _result, _, device = _run(tmp_path, [CLICK_CENTRE, DONE], screen=screen)
    assert ("move", -720, 450) in device.calls


def test_requests_carry_grammar_and_limits(tmp_path: Path) -> None:
    _result, runtime, _ = _run(tmp_path, [DONE],
                              settings=ModelSettings(allowed=frozenset({"click", "done"}),
                                                     max_patches=256,
                                                     grounding=GroundingPrompt.JOINT))
    request: Request = runtime.requests[0]
    assert request.grammar is not None and request.grammar.startswith("root ::= ws (click | done)")
    assert request.image is not None and request.image.n_patches <= 256
    assert request.max_answer_tokens > 100


def test_records_are_private(tmp_path: Path) -> None:
    result, _, _ = _run(tmp_path, [DONE])
    assert result.run_dir.stat().st_mode & 0o777 == 0o700
    for path in result.run_dir.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_unwritable_runs_dir_stops_before_acting(tmp_path: Path) -> None:
    from deskpilot.agent.rundir import RunDirError
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(RunDirError, match="cannot write the run directory"):
        RunDir(blocked / "runs")


class _Broken:
    name = "broken"

    def complete(self, request: Request) -> Reply:
        raise RuntimeFailure("out of memory")

    def close(self) -> None:
        pass


def test_runtime_exception_is_reported(tmp_path: Path) -> None:
    result, _, device = _run(tmp_path, [], runtime=_Broken())
    assert result.status is Status.RUNTIME_ERROR and "out of memory" in result.message
    assert device.calls == []


class _DeadScreen(FakeScreen):
    def grab(self):
        from deskpilot.grounding.capture import CaptureError

        raise CaptureError("cannot open display ':9'")


def test_capture_failure_ends_the_run(tmp_path: Path) -> None:
    screen = _DeadScreen(np.zeros((10, 10, 3), np.uint8))
    result, _, device = _run(tmp_path, [DONE], screen=screen)
    assert result.status is Status.INPUT_ERROR and "cannot open display" in result.message
    assert device.calls == []


class _CtrlC(_Broken):
    def complete(self, request: Request) -> Reply:
        raise KeyboardInterrupt


def test_ctrl_c_during_inference_ends_the_run_with_a_record(tmp_path: Path) -> None:
    result, _, device = _run(tmp_path, [], runtime=_CtrlC())
    assert result.status is Status.INTERRUPTED
    assert json.loads((result.run_dir / "result.json").read_text())["status"] == "interrupted"
    assert device.calls == []


def test_ctrl_c_mid_drag_releases_the_button(tmp_path: Path) -> None:
    drag = '{"action": "drag", "box": [0.2, 0.2, 0.2, 0.2], "to_box": [0.8, 0.8, 0.8, 0.8]}'
    device = RecordingDevice(fail_at=[3], error=lambda _msg: KeyboardInterrupt())
    result, _, _ = _run(tmp_path, [drag, DONE], device=device)
    assert result.status is Status.INTERRUPTED
    assert ("button_down", "left") in device.calls and device.buttons_down == []


def test_screenshots_are_written_off_the_hot_path_and_flushed_at_the_end(tmp_path) -> None:
    from deskpilot.agent.rundir import RunDir

    record = RunDir(tmp_path)
    frame = np.full((600, 800, 3), 7, np.uint8)
    rels = [record.save_screenshot(i, frame) for i in range(1, 13)]  # more than the queue
    frame[:] = 200  # a later change must not reach the files already queued
    assert record.flush() == 0
    from PIL import Image
    for rel in rels:
        path = record.path / rel
        assert (path.stat().st_mode & 0o777) == 0o600
        assert np.asarray(Image.open(path)).max() == 7


def test_the_same_click_on_an_unchanged_screen_ends_the_run(tmp_path: Path) -> None:
    result, _, device = _run(tmp_path, [CLICK_CENTRE] * 6)
    assert result.status is Status.LOOP_DETECTED and len(result.steps) == 3
    assert "3 times with no change on the screen" in result.message
    assert sum(c[0] == "button_down" for c in device.calls) == 3


def test_an_a_b_a_b_cycle_on_returning_screens_ends_the_run(tmp_path: Path) -> None:
    other = '{"action": "click", "target": "corner", "box": [0.1, 0.1, 0.2, 0.2]}'
    result, _, _ = _run(tmp_path, [CLICK_CENTRE, other] * 4)
    assert result.status is Status.LOOP_DETECTED and len(result.steps) == 4


def test_a_changing_screen_is_not_a_loop(tmp_path: Path) -> None:
    frames = [np.full((600, 800, 3), 10 * i, np.uint8) for i in range(6)]
    result, _, _ = _run(tmp_path, [CLICK_CENTRE] * 5 + [DONE], screen=FakeScreen(frames))
    assert result.status is Status.DONE


def test_a_trajectory_that_cannot_be_written_stops_the_agent(tmp_path: Path,
                                                              monkeypatch) -> None:
    from deskpilot.agent import rundir

    record = RunDir(tmp_path)
    real = rundir._private_write

    def full_disk(path, data, *, append=False):
        if append:
            raise OSError(28, "No space left on device")
        return real(path, data, append=append)

    monkeypatch.setattr(rundir, "_private_write", full_disk)
    device = RecordingDevice()
    result = run_agent("t", runtime=ScriptedRuntime([CLICK_CENTRE] * 3), screen=_screen(),
                       device=device, record=record, clock=FakeClock(),
                       settings=JOINT_SETTINGS)
    assert result.status is Status.RECORD_ERROR and "No space left" in result.message
    assert sum(c[0] == "button_down" for c in device.calls) == 1  # no action after the failure
