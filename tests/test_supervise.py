"""The person's controls, without an interface: Controls on its own and in the loop."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deskpilot.actions.executor import RecordingDevice
from deskpilot.actions.gate import Gate
from deskpilot.actions.policy import Policy, Scope
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import Status
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.supervise import Controls, StopRequested, Verdict
from deskpilot.agent.takeover import TakeoverWatch
from deskpilot.grounding.capture import FakeScreen
from deskpilot.models.scripted import ScriptedRuntime
from tests.helpers.fakes import JOINT_SETTINGS, FakeClock

CLICK = '{"action": "click", "target": "x", "box": [0.4, 0.4, 0.6, 0.6]}'
DONE = '{"action": "done", "answer": "ok"}'


def later(seconds: float, what) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=lambda: (time.sleep(seconds), what()), daemon=True)
    thread.start()
    return thread


def test_before_think_blocks_while_paused_and_resumes() -> None:
    c = Controls()
    c.pause()
    later(0.2, c.resume)
    started = time.monotonic()
    assert c.before_think(1) is True
    assert time.monotonic() - started >= 0.15


def test_a_stop_wakes_every_wait() -> None:
    c = Controls()
    c.pause()
    later(0.1, c.stop)
    assert c.before_think(1) is False
    assert c.before_act(1, "click") is Verdict.STOP
    assert c.stop_reason == "stopped by the person"


def test_the_first_stop_reason_stays() -> None:
    c = Controls()
    c.stop("stopped by the kill switch")
    c.stop("stopped by the person")
    assert c.stop_reason == "stopped by the kill switch"


def test_step_once_lets_exactly_one_action_through_per_step() -> None:
    c = Controls()
    c.set_step_once(True)
    c.step()
    assert c.before_act(1, "a") is Verdict.GO
    later(0.1, c.step)
    assert c.before_act(2, "b") is Verdict.GO  # waited for the second step()


def test_approve_each_asks_and_denies() -> None:
    asked: list[str] = []
    c = Controls(ask=lambda summary: asked.append(summary) or False)
    c.set_approve_each(True)
    assert c.before_act(1, "click OK") is Verdict.DENY
    assert asked == ["click OK"]


def test_hints_are_joined_and_taken_once() -> None:
    c = Controls()
    c.add_hint("  use the\n green one ")
    c.add_hint("not red")
    c.add_hint("   ")
    assert c.take_hint() == "use the green one not red"
    assert c.take_hint() is None


def test_streamed_text_raises_once_stopped() -> None:
    c = Controls()
    seen: list[str] = []
    c.on_text = seen.append
    c.streamed("a")
    c.stop()
    with pytest.raises(StopRequested):
        c.streamed("b")
    assert seen == ["a"]


def test_taken_over_waits_for_resume_and_can_be_stopped() -> None:
    c = Controls()
    later(0.1, c.resume)
    assert c.taken_over("a click") is True
    later(0.1, c.stop)
    assert c.taken_over("a click") is False


def _run(tmp_path: Path, replies: list[str], **kw: object):  # type: ignore[no-untyped-def]
    device = RecordingDevice()
    kw.setdefault("settings", JOINT_SETTINGS)
    result = run_agent("task", runtime=ScriptedRuntime(replies),
                       screen=FakeScreen([np.full((400, 600, 3), i * 30, np.uint8)
                                          for i in range(5)]),
                       device=device, record=RunDir(tmp_path), clock=FakeClock(),
                       **kw)  # type: ignore[arg-type]
    return result, device


def test_the_kill_switch_stops_before_the_next_action_without_an_interface(tmp_path: Path
                                                                          ) -> None:
    watch = TakeoverWatch()
    watch.feed(json.dumps({"kind": "kill"}))
    result, device = _run(tmp_path, [CLICK, DONE], takeover=watch)
    assert result.status is Status.INTERRUPTED
    assert result.message == "stopped by the kill switch"
    assert device.calls == []


class _TypingApprover:
    """Approves, and meanwhile the person's keys and mouse reach the listener."""

    def __init__(self, watch: TakeoverWatch) -> None:
        self.watch = watch
        self.asked = 0

    def approve(self, concern, summary: str) -> bool:  # type: ignore[no-untyped-def]
        self.asked += 1
        self.watch.feed(json.dumps({"kind": "key"}))
        self.watch.feed(json.dumps({"kind": "press", "x": 1, "y": 1, "button": "left"}))
        return True


def test_answering_an_approval_is_not_a_takeover(tmp_path: Path) -> None:
    watch = TakeoverWatch(grace_s=0.0)
    policy = Policy(scope=Scope(), allow=frozenset(), task_text=["task"])
    approver = _TypingApprover(watch)
    gate = Gate(policy, approver)
    keys = '{"action": "key", "keys": "ctrl+alt+delete"}'  # sensitive: the person is asked
    result, device = _run(tmp_path, [keys, DONE], takeover=watch, gate=gate)
    assert approver.asked == 1
    assert result.status is Status.DONE, result.message
    assert "key_down" in [c[0] for c in device.calls]
