"""End to end through the real llama.cpp path on a real X display.

A tiny random-weight GGUF pair of Phi-4-reasoning-vision's architecture is written, a real
screenshot of an Xvfb display goes through mtmd as raw RGB, the grammar-constrained answer
parses into an action, the action is validated and executed with pyautogui, and the trajectory
holds the step. Random weights choose nonsense, but the grammar keeps every reply well formed;
some replies are still rejected by the validator (a box with x2 < x1, a corner), which is the
point of validating, so the run allows several attempts and checks each kind of outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from deskpilot.actions.parse import parse_plan
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import Outcome
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.settings import Budget, ModelSettings
from deskpilot.models.runtime import Mode

pytestmark = [pytest.mark.display, pytest.mark.llama]


@pytest.fixture(scope="module")
def tiny_runtime(tmp_path_factory: pytest.TempPathFactory):
    from deskpilot.models.llamacpp import LlamaCppRuntime
    from deskpilot.models.tiny import write_tiny_pair

    pair = write_tiny_pair(tmp_path_factory.mktemp("tiny"))
    runtime = LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=8192)
    yield runtime
    runtime.close()


def _pointer(display: str) -> tuple[int, int]:
    out = subprocess.run(["xdotool", "getmouselocation", "--shell"], check=True, text=True,
                         capture_output=True, env={**os.environ, "DISPLAY": display}).stdout
    values = dict(line.split("=", 1) for line in out.split())
    return int(values["X"]), int(values["Y"])


def test_tiny_model_drives_the_real_pointer(display: str, tiny_runtime, tmp_path: Path) -> None:
    from deskpilot.actions.executor import PyAutoGuiDevice
    from deskpilot.grounding.capture import MssScreen

    screen = MssScreen()
    result = run_agent(
        "move the pointer somewhere", runtime=tiny_runtime, screen=screen,
        device=PyAutoGuiDevice(), record=RunDir(tmp_path),
        budget=Budget(max_steps=8, max_consecutive_errors=8),
        settings=ModelSettings(mode=Mode.DIRECT, allowed=frozenset({"move"}), temperature=0.9,
                               max_patches=1024))
    screen.close()

    lines = [json.loads(x) for x in (result.run_dir / "trajectory.jsonl").read_text()
             .splitlines()]
    assert len(lines) == len(result.steps) >= 1
    for step, line in zip(result.steps, lines, strict=True):
        # Every reply was grammar-constrained: the planner's is one well-formed JSON move
        # naming its target in words, the grounding call's a bare box; the validator may
        # still refuse the box, and says why.
        plan = parse_plan(line["reply"]["answer"])
        assert plan.name == "move" and len(plan.targets) == 1
        assert 256 <= line["image_tokens"] <= 1024 and line["screenshot"]
        (ground,) = line["grounding"]
        assert ground["box"] is not None and ground["target"] == plan.targets[0]
        if step.outcome is Outcome.REJECTED:
            assert line["error"]
        else:
            assert line["action"]["box"] == ground["box"]
    executed = [s for s in result.steps if s.outcome is Outcome.EXECUTED]
    assert executed, f"no reply was executable: {[s.error for s in result.steps]}"
    assert _pointer(display) == executed[-1].points[0]
