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

from deskpilot.agent.cli.demo import check_display, replay_xcalc
from deskpilot.agent.records import Outcome, Status
from deskpilot.agent.rundir import RunDir

pytestmark = pytest.mark.display


def test_recorded_run_computes_15_on_real_xcalc(display: str, tmp_path: Path) -> None:
    replay = replay_xcalc(display, RunDir(tmp_path))
    assert not check_display(display, replay.before, "15").matches  # it starts at 0
    assert check_display(display, replay.after, "15").matches
    assert not check_display(display, replay.after, "16").matches

    result = replay.result
    assert result.status is Status.DONE and result.answer == "15"
    assert [s.outcome for s in result.steps] == [Outcome.EXECUTED] * 4 + [Outcome.TERMINAL]
    lines = (result.run_dir / "trajectory.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines[:4]]
    assert [r["action"]["target"] for r in records] == [
        "the 7 button", "the + button", "the 8 button", "the = button"]
    # Planner and grounder: each click's box came from the model's own grounding call.
    assert all(len(r["grounding"]) == 1 and r["grounding"][0]["box"] == r["action"]["box"]
               for r in records)
