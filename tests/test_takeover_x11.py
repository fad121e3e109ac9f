"""Takeover on a real X display: the person's input stops the agent, the agent's own does not.

xdotool stands in for the person: its events reach pynput like a real mouse's would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from deskpilot.agent.clock import SystemClock
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import Status
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.takeover import TakeoverWatch
from deskpilot.grounding.capture import FakeScreen
from deskpilot.models.runtime import Reply, Request
from deskpilot.models.scripted import ScriptedRuntime
from tests.helpers.fakes import JOINT_SETTINGS

pytestmark = [pytest.mark.display,
              pytest.mark.skipif(shutil.which("xdotool") is None, reason="needs xdotool")]


def click(x: float, y: float) -> str:
    return (f'{{"action": "click", "target": "spot", "box": [{x}, {y}, {x + 0.02}, '
            f'{y + 0.02}]}}')


class Person(ScriptedRuntime):
    """Answers from a script; before answering call ``at``, the 'person' moves the mouse."""

    def __init__(self, replies: list[str], display: str, at: int | None) -> None:
        super().__init__(replies)
        self._display, self._at = display, at

    def complete(self, request: Request) -> Reply:
        if len(self.requests) == self._at:
            time.sleep(0.4)  # the model is thinking; the agent's last click is long done
            subprocess.run(["xdotool", "mousemove", "17", "23"], check=True,
                           env={**os.environ, "DISPLAY": self._display})
            time.sleep(0.3)  # the listener sees the move meanwhile
        return super().complete(request)


def _run(display: str, tmp_path: Path, replies: list[str], at: int | None):
    from deskpilot.actions.executor import PyAutoGuiDevice

    frames = [np.full((800, 1280, 3), 20 * i, np.uint8) for i in range(8)]  # always changing
    with TakeoverWatch() as watch:
        runtime = Person(replies, display, at)
        result = run_agent("click around", runtime=runtime, device=PyAutoGuiDevice(),
                           screen=FakeScreen(frames), record=RunDir(tmp_path),
                           clock=SystemClock(), takeover=watch, settings=JOINT_SETTINGS)
    return result, runtime


def test_the_agents_own_input_is_not_a_takeover(display: str, tmp_path: Path) -> None:
    replies = [click(0.2, 0.2), click(0.5, 0.5), click(0.7, 0.3),
               '{"action": "key", "keys": "shift"}', '{"action": "done"}']
    result, _ = _run(display, tmp_path, replies, at=None)
    assert result.status is Status.DONE, result.message


def test_the_persons_mouse_stops_the_agent_before_its_next_action(display: str,
                                                                  tmp_path: Path) -> None:
    replies = [click(0.2, 0.2), click(0.5, 0.5), click(0.7, 0.3), '{"action": "done"}']
    result, runtime = _run(display, tmp_path, replies, at=2)
    assert result.status is Status.TAKEN_OVER, result.message
    assert "you have control (the pointer moved to (17, 23))" in result.message
    assert len(result.steps) == 2 and len(runtime.requests) == 3  # the third click never ran


def test_the_agents_own_input_is_not_handed_back(display: str) -> None:
    from deskpilot.actions.executor import PyAutoGuiDevice

    device = PyAutoGuiDevice()
    with TakeoverWatch() as watch:
        with watch.acting():
            device.move(300, 300)
            device.button_down("left")
            device.move(320, 310)
            device.button_up("left")
            device.key_down("a")
            device.key_up("a")
        time.sleep(0.5)  # past the grace period; the listener saw all of it long ago
        assert watch.taken() is None
        assert watch.reset() == []
        subprocess.run(["xdotool", "mousemove", "33", "44"], check=True,
                       env={**os.environ, "DISPLAY": display})
        deadline = time.monotonic() + 2
        while watch.taken() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watch.reset() == ["move(33, 44)"]


def test_under_supervision_the_persons_mouse_pauses_the_agent_until_handed_back(
        display: str, tmp_path: Path) -> None:
    """With the interface's Controls the run does not end: it waits, then looks again."""
    import threading

    from deskpilot.actions.executor import PyAutoGuiDevice
    from deskpilot.agent.records import Outcome
    from deskpilot.agent.supervise import Controls

    replies = [click(0.2, 0.2), click(0.5, 0.5), click(0.7, 0.3), '{"action": "done"}']
    frames = [np.full((800, 1280, 3), 20 * i, np.uint8) for i in range(8)]
    controls = Controls()
    results = []
    with TakeoverWatch(keys=False) as watch:
        runtime = Person(replies, display, at=1)
        agent = threading.Thread(target=lambda: results.append(run_agent(
            "click around", runtime=runtime, device=PyAutoGuiDevice(),
            screen=FakeScreen(frames), record=RunDir(tmp_path), clock=SystemClock(),
            takeover=watch, supervisor=controls, settings=JOINT_SETTINGS)))
        agent.start()
        deadline = time.monotonic() + 10
        while not (controls.state() or "").startswith("you have control"):
            assert time.monotonic() < deadline, controls.state()
            time.sleep(0.05)
        held = len(runtime.requests)
        time.sleep(0.5)
        assert len(runtime.requests) == held  # paused: no further model call, no action
        controls.resume()
        agent.join(20)
    (result,) = results
    assert result.status is Status.DONE, result.message
    dropped = [s for s in result.steps if s.outcome is Outcome.TAKEN_OVER]
    assert len(dropped) == 1 and "move(17, 23)" in (dropped[0].error or "")
