"""The reliability matrix, part (a): bad model outputs replayed through the real loop.

Each row scripts the model's reply and runs ``agent.loop.run_agent`` against a fake screen, a
recording input device and a fake clock. A rejected reply must never reach the device (not even
in part), must be recorded as a REJECTED step with its reason, must be shown to the model in the
next prompt, and three in a row must end the run with TOO_MANY_ERRORS. The budgets end runs too.

The loop rows (the same action with no change on the screen, A-B-A-B cycles) end the run with
LOOP_DETECTED; ``agent.loopguard`` has its own units in tests/test_loopguard.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deskpilot.actions.approval import DenyAll
from deskpilot.actions.executor import RecordingDevice
from deskpilot.actions.gate import Gate
from deskpilot.actions.policy import Policy
from deskpilot.actions.validate import CORNER_MARGIN
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import Outcome, RunResult, Status
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.settings import Budget
from deskpilot.grounding.capture import FakeScreen
from deskpilot.grounding.geometry import Point, ScreenGeometry
from deskpilot.models.runtime import Reply, Request
from deskpilot.models.scripted import ScriptedRuntime
from tests.helpers.fakes import JOINT_SETTINGS, FakeClock

CLICK = '{"action": "click", "target": "middle", "box": [0.4, 0.4, 0.6, 0.6]}'
DONE = '{"action": "done", "answer": "ok"}'
FEEDBACK = "Your previous reply could not be used: "
WIDTH, HEIGHT = 800, 600


class SlowRuntime(ScriptedRuntime):
    """A scripted model that takes ``seconds`` of the fake clock per answer."""

    def __init__(self, replies: list[str], clock: FakeClock, seconds: float) -> None:
        super().__init__(replies)
        self._clock = clock
        self._seconds = seconds

    def complete(self, request: Request) -> Reply:
        self._clock.t += self._seconds
        return super().complete(request)


def _run(tmp_path: Path, replies: list[str | Reply], *, budget: Budget | None = None,
         clock: FakeClock | None = None, runtime: ScriptedRuntime | None = None,
         gated: bool = False, screen: FakeScreen | None = None,
         ) -> tuple[RunResult, ScriptedRuntime, RecordingDevice]:
    runtime = runtime or ScriptedRuntime(replies)
    device = RecordingDevice()
    screen = screen or FakeScreen(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    record = RunDir(tmp_path)
    gate = Gate(Policy(), DenyAll(), record) if gated else None  # headless: nothing approved
    result = run_agent("press the middle button", runtime=runtime, screen=screen, device=device,
                       record=record, clock=clock or FakeClock(), budget=budget or Budget(),
                       gate=gate, settings=JOINT_SETTINGS)
    return result, runtime, device


def _trajectory(result: RunResult) -> list[dict[str, Any]]:
    assert result.run_dir is not None
    text = (result.run_dir / "trajectory.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _reply(answer: str, reasoning: str = "") -> Reply:
    return Reply(answer=answer, reasoning=reasoning)


# (reply, a fragment of the reason the model is told). Every row is refused before any input.
REJECTED = [
    pytest.param(_reply(""), "held no action", id="empty-output"),
    pytest.param(_reply("", "The OK button is in the middle, so I should click it."),
                 "held no action", id="reasoning-only"),
    pytest.param(_reply("   \n\t "), "held no action", id="whitespace-only"),
    pytest.param(_reply("I will click the OK button."), "must start with '{'", id="prose"),
    pytest.param(_reply('{"action": "click", "box": [0.4, 0.4'), "not valid JSON",
                 id="truncated-json"),
    pytest.param(_reply('{"action": "click", "box": [0.4, 0.4, 0.6, 0.6]]}'), "not valid JSON",
                 id="unbalanced-json"),
    pytest.param(_reply(CLICK + " I clicked the middle."), "found extra text", id="trailing-text"),
    pytest.param(_reply(CLICK + "\n" + DONE), "found a second action", id="two-actions"),
    pytest.param(_reply('{"action": "teleport", "box": [0.4, 0.4, 0.6, 0.6]}'),
                 "unknown action 'teleport'", id="unknown-action"),
    pytest.param(_reply('{"action": "click", "box": [0.4, 0.4, 0.6, 0.6], "x": 400}'),
                 "x: Extra inputs are not permitted", id="unknown-key"),
    pytest.param(_reply('{"action": "click", "box": "0.4, 0.4, 0.6, 0.6"}'),
                 "box: Input should be a valid tuple", id="wrong-type-box"),
    pytest.param(_reply('{"action": "click", "box": [0.4, 0.4, 0.6, 0.6], "clicks": "twice"}'),
                 "clicks: Input should be a valid integer", id="wrong-type-clicks"),
    pytest.param(_reply('{"action": "click", "box": [NaN, 0.4, 0.6, 0.6]}'),
                 "NaN is not a number", id="nan"),
    pytest.param(_reply('{"action": "wait", "seconds": Infinity}'),
                 "Infinity is not a number", id="inf"),
    pytest.param(_reply('{"action": "click", "box": [0.4, 0.4, 1e999, 0.6]}'),
                 "box.2: Input should be a finite number", id="inf-by-overflow"),
    pytest.param(_reply('{"action": "click", "box": [-0.2, 0.4, 0.6, 0.6]}'),
                 "box.0: Input should be greater than or equal to 0", id="negative-coordinate"),
    pytest.param(_reply('{"action": "click", "box": [0.4, 0.4, 1.5, 0.6]}'),
                 "box.2: Input should be less than or equal to 1", id="out-of-bounds"),
    pytest.param(_reply('{"action": "click", "box": [0, 0, 0, 0]}'),
                 "box points at a screen corner (0, 0)", id="corner-top-left"),
    pytest.param(_reply('{"action": "click", "box": [1, 1, 1, 1]}'),
                 f"box points at a screen corner ({WIDTH - 1}, {HEIGHT - 1})",
                 id="corner-bottom-right"),
    pytest.param(_reply('{"action": "move", "box": [0.999, 0, 1, 0.001]}'),
                 "points at a screen corner", id="corner-top-right-move"),
    pytest.param(_reply('{"action": "click", "box": [0.6, 0.4, 0.4, 0.6]}'),
                 "box must be [x1, y1, x2, y2] with x1 <= x2", id="x2-before-x1"),
    pytest.param(_reply(json.dumps({"action": "type", "text": "x" * 100_000})),
                 "the reply is 100030 characters long", id="type-100k"),
    pytest.param(_reply(json.dumps({"action": "type", "text": "x" * 600})),
                 "text: String should have at most 500 characters", id="type-600"),
    pytest.param(_reply(json.dumps({"action": "type", "text": "ls\x1b[A"})),
                 "control or unassigned character (U+001B at 2)", id="control-escape"),
    pytest.param(_reply(json.dumps({"action": "type", "text": "a\x00b"})),
                 "control or unassigned character (U+0000 at 1)", id="control-nul"),
    pytest.param(_reply('{"action": "type", "text": "beep\x07"}'),
                 "Invalid control character", id="control-raw-in-json"),
    pytest.param(_reply(json.dumps({"action": "type", "text": "ok\u202ekcilc"})),
                 "control or unassigned character (U+202E at 2)", id="control-bidi"),
    pytest.param(_reply('{"action": "key", "keys": "ctrl+alt+del+f4+x"}'),
                 "keys: key chord 'ctrl+alt+del+f4+x' has 5 keys", id="chord-too-long"),
    pytest.param(_reply('{"action": "key", "keys": "ctrl+launchmissiles"}'),
                 "keys: unknown key 'launchmissiles'", id="unknown-key-name"),
    pytest.param(_reply('{"action": "drag", "box": [0.4, 0.4, 0.6, 0.6], '
                        '"to_box": [0.4, 0.4, 0.6, 0.6]}'),
                 "drag starts and ends on the same point", id="zero-length-drag"),
    pytest.param(_reply('{"action": "drag", "box": [0.4, 0.4, 0.6, 0.6], '
                        '"to_box": [5, 5, 6, 6]}'),
                 "to_box.0: Input should be less than or equal to 1", id="drag-off-screen"),
    pytest.param(_reply('{"action": "scroll", "box": [0.4, 0.4, 0.6, 0.6], '
                        '"direction": "down", "amount": 1e9}'),
                 "amount: Input should be less than or equal to 25", id="scroll-1e9"),
    pytest.param(_reply('{"action": "scroll", "box": [0.4, 0.4, 0.6, 0.6], '
                        '"direction": "down", "amount": 1000000000}'),
                 "amount: Input should be less than or equal to 25", id="scroll-1000000000"),
]


@pytest.mark.parametrize(("reply", "reason"), REJECTED)
def test_bad_output_is_refused_shown_to_the_model_and_ends_the_run_at_three(
        tmp_path: Path, reply: Reply, reason: str) -> None:
    result, runtime, device = _run(tmp_path, [reply] * 3)

    assert device.calls == []  # nothing, not even the move of a half-checked action
    assert result.status is Status.TOO_MANY_ERRORS
    assert result.message.startswith("3 ") and " in a row; last: " in result.message
    assert reason in result.message
    assert [s.outcome for s in result.steps] == [Outcome.REJECTED] * 3
    for step in result.steps:
        assert step.action is None and step.points == ()
        assert step.error is not None and reason in step.error
        assert step.reasoning == reply.reasoning
    # The first prompt has no complaint; every later one shows the last reason.
    assert len(runtime.requests) == 3
    assert FEEDBACK not in runtime.requests[0].prompt
    for request in runtime.requests[1:]:
        assert FEEDBACK in request.prompt
        feedback = request.prompt.split(FEEDBACK, 1)[1].splitlines()[0]
        assert reason in feedback
    lines = _trajectory(result)
    assert [line["outcome"] for line in lines] == ["rejected"] * 3
    assert all(reason in line["error"] for line in lines)


@pytest.mark.parametrize(("reply", "reason"), REJECTED)
def test_a_good_reply_after_a_bad_one_runs_only_the_good_one(
        tmp_path: Path, reply: Reply, reason: str) -> None:
    clean, _, clean_device = _run(tmp_path / "clean", [CLICK, DONE])
    result, runtime, device = _run(tmp_path / "bad", [reply, CLICK, DONE])
    assert result.status is Status.DONE and clean.status is Status.DONE
    assert device.calls == clean_device.calls  # exactly the click: no trace of the bad reply
    assert [s.outcome for s in result.steps] == [Outcome.REJECTED, Outcome.EXECUTED,
                                                 Outcome.TERMINAL]
    assert reason in runtime.requests[1].prompt
    assert FEEDBACK not in runtime.requests[2].prompt  # the complaint is gone once fixed


def test_failures_must_be_consecutive_to_end_the_run(tmp_path: Path) -> None:
    result, _, device = _run(tmp_path, ["", "{}", CLICK, "", "{}", CLICK, DONE])
    assert result.status is Status.DONE
    assert [s.outcome for s in result.steps].count(Outcome.REJECTED) == 4
    assert sum(call[0] == "button_down" for call in device.calls) == 2


def test_the_error_limit_is_configurable(tmp_path: Path) -> None:
    result, runtime, device = _run(tmp_path, ["{}"] * 5,
                                   budget=Budget(max_consecutive_errors=5))
    assert result.status is Status.TOO_MANY_ERRORS and len(result.steps) == 5
    assert result.message.startswith("5 ") and " in a row" in result.message
    assert len(runtime.requests) == 5 and device.calls == []


FORBIDDEN = [
    pytest.param("ctrl+alt+delete", ["ctrl", "alt", "delete"], id="ctrl+alt+delete"),
    pytest.param("ctrl+alt+del", ["ctrl", "alt", "delete"], id="ctrl+alt+del"),
    pytest.param("super+l", ["win", "l"], id="super+l"),
    pytest.param("ctrl+alt+shift+delete", ["ctrl", "alt", "shift", "delete"],
                 id="ctrl+alt+shift+delete"),
]


# Forbidden hotkeys, without the safety gate: the validator checks only that the keys exist,
# so the bare loop (run_agent with gate=None, its default) carries them out. That is today's
# behaviour, asserted as such; the policy layer is the gate (next test), and callers that act
# on a real desktop are expected to pass one.
@pytest.mark.parametrize(("keys", "pressed"), FORBIDDEN)
def test_forbidden_hotkeys_without_a_gate_are_carried_out(tmp_path: Path, keys: str,
                                                         pressed: list[str]) -> None:
    result, _, device = _run(tmp_path, [json.dumps({"action": "key", "keys": keys}), DONE])
    assert result.status is Status.DONE
    assert result.steps[0].outcome is Outcome.EXECUTED
    assert [c[1] for c in device.calls if c[0] == "key_down"] == pressed
    assert device.keys_down == []  # released, as on every path


@pytest.mark.parametrize(("keys", "pressed"), FORBIDDEN)
def test_forbidden_hotkeys_are_denied_by_the_headless_gate(tmp_path: Path, keys: str,
                                                           pressed: list[str]) -> None:
    del pressed
    reply = json.dumps({"action": "key", "keys": keys})
    result, runtime, device = _run(tmp_path, [reply] * 3, gated=True)
    assert device.calls == []
    assert result.status is Status.TOO_MANY_ERRORS
    assert [s.outcome for s in result.steps] == [Outcome.DENIED] * 3
    assert all(s.error and "sensitive_keys" in s.error for s in result.steps)
    assert "sensitive_keys" in runtime.requests[1].prompt.split(FEEDBACK, 1)[1]


def test_an_enormous_drag_is_carried_out_clear_of_the_corners(tmp_path: Path) -> None:
    drag = ('{"action": "drag", "box": [0, 0, 0.01, 0.01], "to_box": [0.99, 0.99, 1, 1]}')
    result, _, device = _run(tmp_path, [drag, DONE])
    assert result.status is Status.DONE
    (start, end) = result.steps[0].points
    assert start == (4, 3) and end == (WIDTH - 4, HEIGHT - 3)
    monitor = ScreenGeometry(0, 0, WIDTH, HEIGHT)
    assert all(monitor.corner_distance(Point(*p)) >= CORNER_MARGIN for p in (start, end))
    assert device.calls[0] == ("move", *start) and ("move", *end) in device.calls
    assert device.buttons_down == []


def test_step_budget_ends_the_run(tmp_path: Path) -> None:
    result, runtime, device = _run(tmp_path, [CLICK] * 10,
                                   budget=Budget(max_steps=4, max_repeats=10))
    assert result.status is Status.MAX_STEPS
    assert result.message == "step budget of 4 spent"
    assert len(result.steps) == 4 and len(runtime.requests) == 4
    assert sum(call[0] == "button_down" for call in device.calls) == 4
    assert result.run_dir is not None
    assert json.loads((result.run_dir / "result.json").read_text())["status"] == "max_steps"


def test_step_budget_counts_rejected_replies(tmp_path: Path) -> None:
    result, _, _ = _run(tmp_path, ["{}", CLICK, "{}", CLICK, "{}"], budget=Budget(max_steps=3))
    assert result.status is Status.MAX_STEPS and len(result.steps) == 3


def test_time_budget_ends_the_run_with_a_slow_model(tmp_path: Path) -> None:
    clock = FakeClock()
    runtime = SlowRuntime([CLICK] * 10, clock, seconds=40.0)
    result, _, device = _run(tmp_path, [], budget=Budget(max_seconds=100, max_repeats=10),
                             clock=clock,
                             runtime=runtime)
    # Steps start at 0, 40 and 80 s; at 120 s the budget is spent before the model is asked.
    assert result.status is Status.TIMEOUT
    assert result.message == "wall-time budget of 100s spent"
    assert len(result.steps) == 3 and len(runtime.requests) == 3
    assert sum(call[0] == "button_down" for call in device.calls) == 3


def test_time_budget_counts_the_agents_own_waits(tmp_path: Path) -> None:
    clock = FakeClock()
    wait = '{"action": "wait", "seconds": 25}'
    result, _, _ = _run(tmp_path, [wait] * 10, budget=Budget(max_seconds=60), clock=clock)
    assert result.status is Status.TIMEOUT
    assert clock.slept == [25, 25, 25]


def _frame(mark: int | None = None) -> np.ndarray:
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    if mark is not None:
        rgb[100:140, mark:mark + 40] = 255
    return rgb


ESC = '{"action": "key", "keys": "esc"}'
TYPE_A = '{"action": "type", "text": "a"}'


def test_the_same_action_on_an_unchanged_screen_ends_the_run(tmp_path: Path) -> None:
    result, runtime, device = _run(tmp_path, [CLICK] * 10)
    assert result.status is Status.LOOP_DETECTED
    assert result.message.startswith("the same action 3 times with no change on the screen")
    assert len(result.steps) == 3 and len(runtime.requests) == 3
    assert sum(call[0] == "button_down" for call in device.calls) == 3


def test_an_a_b_a_b_cycle_back_to_the_same_screen_ends_the_run(tmp_path: Path) -> None:
    # Open a menu, close it, open it, close it: the screen keeps coming back.
    screen = FakeScreen([_frame(), _frame(mark=300)], cycle=True)
    result, _, _ = _run(tmp_path, [CLICK, ESC] * 5, screen=screen)
    assert result.status is Status.LOOP_DETECTED and len(result.steps) == 4
    assert "in turn 2 times" in result.message


def test_the_same_action_that_changes_the_screen_is_no_loop(tmp_path: Path) -> None:
    # Typing into a field: the same action, one more letter on the screen each step.
    screen = FakeScreen([_frame(mark=40 * i) for i in range(8)])
    result, _, device = _run(tmp_path, [TYPE_A] * 6 + [DONE], screen=screen)
    assert result.status is Status.DONE
    assert [c for c in device.calls if c[0] == "write"] == [("write", "a")] * 6


def test_waiting_on_an_unchanged_screen_is_no_loop(tmp_path: Path) -> None:
    wait = '{"action": "wait", "seconds": 1}'
    result, _, _ = _run(tmp_path, [wait] * 5 + [DONE])
    assert result.status is Status.DONE
