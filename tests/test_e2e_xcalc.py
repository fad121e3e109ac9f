"""End to end on a real X display: recorded model answers drive a real xcalc to 7 + 8 = 15.

The answers are in the model's own format (normalized boxes in the screenshot), so this runs
the same capture, preprocessing, parsing, validation, mapping and pyautogui input as a live run.
The result is read from the screen: the calculator's display must match, pixel for pixel, a
second xcalc on which 15 was entered directly, and must not match one showing 16.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.demo import CALC_AT, TASK, check_display, recorded_replies, xcalc_argv
from agent.loop import Budget, run_agent
from agent.records import Outcome, Status
from agent.rundir import RunDir
from grounding.xvfb import launched
from models.scripted import ScriptedRuntime

pytestmark = pytest.mark.display


def test_recorded_run_computes_15_on_real_xcalc(display: str, tmp_path: Path) -> None:
    from actions.executor import PyAutoGuiDevice
    from grounding.capture import MssScreen

    with launched(xcalc_argv("deskpilot-calc", CALC_AT), display, window="deskpilot-calc"):
        screen = MssScreen()
        before = screen.grab().rgb
        assert not check_display(display, before, "15").matches  # it starts at 0
        result = run_agent(TASK, runtime=ScriptedRuntime.from_jsonl(recorded_replies()),
                           screen=screen, device=PyAutoGuiDevice(), record=RunDir(tmp_path),
                           budget=Budget(max_steps=8))
        after = screen.grab().rgb
        assert check_display(display, after, "15").matches
        assert not check_display(display, after, "16").matches
        screen.close()

    assert result.status is Status.DONE and result.answer == "15"
    assert [s.outcome for s in result.steps] == [Outcome.EXECUTED] * 4 + [Outcome.TERMINAL]
    lines = (result.run_dir / "trajectory.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"]["target"] for line in lines[:4]] == [
        "7 button", "+ button", "8 button", "= button"]
