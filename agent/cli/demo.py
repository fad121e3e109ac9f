"""The built-in demo: a recorded xcalc run replayed on a private display, checked from the screen.

It replays answers recorded in the model's own format (normalized boxes) through the real
loop: real screenshots, real validation, real mouse input into a real xcalc. No model runs,
and the demo says so. The result is checked from pixels: the calculator's display after the run
must match, pixel for pixel, a second xcalc on which "15" was entered directly.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from deskpilot.agent.cli.console import print_step, say
from deskpilot.agent.cli.errors import EXIT_FAILED, EXIT_OK, UserError
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import RunResult, StepRecord
from deskpilot.agent.rundir import RunDir, RunDirError, default_runs_root
from deskpilot.agent.settings import Budget
from deskpilot.grounding.capture import MssScreen
from deskpilot.grounding.xvfb import DisplayError, display_env, launched, xvfb
from deskpilot.models.scripted import ScriptedRuntime

log = logging.getLogger(__name__)

SCREEN = (1280, 800)
CALC_AT = (400, 150)        # where the demo's xcalc window is placed (no window manager)
REFERENCE_AT = (800, 150)   # where the reference xcalc goes
LCD = (5, 3, 217, 47)       # the display's rectangle inside an xcalc window: x, y, w, h
BUTTONS = {"1": (69, 346), "5": (113, 316), "6": (157, 316)}  # button centres inside the window
TASK = "Compute 7 + 8 on the calculator and report the result."
EXPECTED = "15"


def recorded_replies() -> Path:
    """The packaged recording of the xcalc run."""
    return Path(str(resources.files("deskpilot.agent") / "data" / "xcalc_7_plus_8.jsonl"))


def xcalc_argv(title: str, at: tuple[int, int]) -> list[str]:
    """Command line for an xcalc window with a known title and position."""
    return ["xcalc", "-title", title, "-geometry", f"+{at[0]}+{at[1]}"]


def lcd_pixels(rgb: np.ndarray, window_at: tuple[int, int]) -> np.ndarray:
    """The xcalc display's pixels, cut from a full-screen screenshot."""
    x, y, w, h = LCD
    left, top = window_at[0] + x, window_at[1] + y
    return rgb[top:top + h, left:left + w]


def reference_lcd(display: str, digits: str) -> np.ndarray:
    """Enter ``digits`` on a fresh xcalc by clicking (xdotool) and return its display pixels."""
    env = display_env(display)
    with launched(xcalc_argv("deskpilot-reference", REFERENCE_AT), display,
                  window="deskpilot-reference"):
        for digit in digits:
            bx, by = BUTTONS[digit]
            subprocess.run(["xdotool", "mousemove", str(REFERENCE_AT[0] + bx),
                            str(REFERENCE_AT[1] + by), "click", "1"],
                           env=env, check=True, capture_output=True)
        screen = MssScreen()
        try:
            return lcd_pixels(screen.grab().rgb, REFERENCE_AT).copy()
        finally:
            screen.close()


@dataclass(frozen=True, slots=True)
class DisplayCheck:
    """Whether the calculator shows the expected number."""

    matches: bool
    differing_pixels: int


def check_display(display: str, rgb: np.ndarray, expected: str) -> DisplayCheck:
    """Compare the demo xcalc's display with a reference xcalc showing ``expected``."""
    ours = lcd_pixels(rgb, CALC_AT)
    ref = reference_lcd(display, expected)
    diff = int(np.any(ours != ref, axis=-1).sum())
    return DisplayCheck(diff == 0, diff)


@dataclass(frozen=True, slots=True)
class Replay:
    """A replayed run and the screen before and after it."""

    result: RunResult
    before: np.ndarray
    after: np.ndarray


def replay_xcalc(display: str, record: RunDir, *,
                 on_step: Callable[[StepRecord], None] | None = None) -> Replay:
    """Start the demo's xcalc on ``display`` and replay the recording through the real loop:
    real screenshots, validation and pyautogui clicks. ``DISPLAY`` must already name it."""
    from deskpilot.actions.executor import PyAutoGuiDevice
    from deskpilot.grounding.capture import MssScreen

    with launched(xcalc_argv("deskpilot-calc", CALC_AT), display, window="deskpilot-calc"):
        screen = MssScreen()
        try:
            before = screen.grab().rgb
            runtime = ScriptedRuntime.from_jsonl(recorded_replies())
            record.write_header({"task": TASK, "model": runtime.name, "replay": True})
            result = run_agent(TASK, runtime=runtime, screen=screen, device=PyAutoGuiDevice(),
                               record=record, budget=Budget(max_steps=8), on_step=on_step)
            return Replay(result, before, screen.grab().rgb)
        finally:
            screen.close()


__all__ = ["CALC_AT", "EXPECTED", "SCREEN", "TASK", "DisplayCheck", "Replay", "check_display",
           "recorded_replies", "replay_xcalc", "xcalc_argv"]


def run_demo(runs_dir: Path | None) -> int:
    """Start Xvfb and xcalc, replay the recording through the real loop, check the display."""
    say("deskpilot demo: a REPLAY of recorded model answers (no model is loaded).\n"
          "Real screenshots, real validation and real mouse clicks on a real xcalc, on a "
          "private Xvfb display.\n", flush=True)
    try:
        record = RunDir(runs_dir or default_runs_root())
    except RunDirError as exc:
        raise UserError(str(exc)) from None
    try:
        with xvfb(*SCREEN) as display:
            os.environ["DISPLAY"] = display
            replay = replay_xcalc(display, record, on_step=print_step)
            check = check_display(display, replay.after, EXPECTED)
    except DisplayError as exc:
        raise UserError(f"{exc}; `make deps` installs what the demo needs") from None
    result = replay.result
    say(f"\n{result.status.value}: model answered {result.answer!r}")
    verdict = ("matches" if check.matches
               else f"does NOT match ({check.differing_pixels} pixels differ)")
    say(f"screen check: the calculator display {verdict} a calculator showing "
          f"{EXPECTED!r}")
    say(f"trajectory and screenshots: {record.path}")
    return EXIT_OK if result.status.ok and check.matches else EXIT_FAILED
