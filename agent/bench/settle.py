"""How much waiting for a stable screen saves over fixed sleeps, on real xcalc and xedit.

After each action the agent calls :func:`grounding.stable.wait_stable` (frame differencing)
instead of sleeping a fixed time. This benchmark clicks a digit on xcalc and types into xedit
on a private Xvfb, times each wait, checks that the screen did change, and compares the median
wait with the fixed sleeps agent scripts commonly use: 0.5 s, 1.0 s, and the 2.0 s that
Anthropic's computer-use-demo sleeps before its screenshot after an action
(``tools/computer.py``: ``_screenshot_delay = 2.0``).

pyautogui connects to the display it first sees, so run this in a fresh process
(``python -m deskpilot.agent.bench.settle``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskpilot.actions.executor import PyAutoGuiDevice
from deskpilot.agent.clock import SystemClock
from deskpilot.grounding.capture import MssScreen
from deskpilot.grounding.stable import changed, thumbnail, wait_stable
from deskpilot.grounding.xvfb import launched, run_display

log = logging.getLogger(__name__)

SIZE = (1280, 800)
CALC_AT = (400, 150)
# Centres of xcalc's keys (screen points) with the window at CALC_AT.
SEVEN = (469, 436)
AC = (601, 226)
EDIT_GEOMETRY = "500x400+700+150"
EDIT_TEXT = (950, 400)  # inside xedit's text pane; without a window manager keys go there
TYPED = "hello "
FIXED_SLEEPS_S = (0.5, 1.0, 2.0)
TIMEOUT_S = 2.0
INTERVAL_S = 0.05   # the wait's defaults, spelled out so the report states them
QUIET_FRAMES = 2


class BenchError(RuntimeError):
    """The benchmark cannot run in this process."""


@dataclass(frozen=True, slots=True)
class _Trial:
    """One timed wait after an action."""

    seconds: float
    stable: bool
    changed: bool


def bench_settle(trials: int = 10) -> dict[str, Any]:
    """Time ``trials`` waits for a stable screen after an xcalc click and after xedit typing."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if "pyautogui" in sys.modules:
        raise BenchError("pyautogui is already bound to a display in this process; run "
                         "`python -m deskpilot.agent.bench.settle` instead")
    clock = SystemClock()
    with ExitStack() as stack:
        display, _ = stack.enter_context(run_display(new=True, size=SIZE))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deskpilot-settle-")))
        notes = tmp / "notes.txt"
        notes.write_text("notes\n", encoding="utf-8")
        stack.enter_context(launched(
            ["xcalc", "-geometry", f"+{CALC_AT[0]}+{CALC_AT[1]}"], display, window="Calculator"))
        stack.enter_context(launched(
            ["xedit", "-geometry", EDIT_GEOMETRY, str(notes)], display, window="xedit"))
        screen = MssScreen(1)
        stack.callback(screen.close)
        wait_stable(screen, clock, timeout_s=5.0)  # first paint of both windows
        device = PyAutoGuiDevice()

        def click(point: tuple[int, int]) -> Callable[[], None]:
            def act() -> None:
                device.move(*point)
                device.button_down("left")
                device.button_up("left")
            return act

        def type_text() -> None:
            device.write(TYPED)

        # AC first (untimed) so every timed "7" turns a "0" into a "7" on the display.
        calc = [_trial(screen, clock, click(SEVEN), reset=click(AC)) for _ in range(trials)]
        device.move(*EDIT_TEXT)
        edit = [_trial(screen, clock, type_text) for _ in range(trials)]
    figures = {"xcalc_click_7": _summary(calc), "xedit_type": _summary(edit)}
    return {
        "display": f"{SIZE[0]}x{SIZE[1]}",
        "trials": trials,
        "wait": {"interval_ms": INTERVAL_S * 1000, "quiet_frames": QUIET_FRAMES,
                 "timeout_s": TIMEOUT_S},
        **figures,
        "fixed_sleeps_s": list(FIXED_SLEEPS_S),
        "saving": {name: _saving(fig["median_ms"]) for name, fig in figures.items()},
        "note": "2.0 s is the fixed delay Anthropic's computer-use-demo sleeps after an action "
                "before its screenshot (tools/computer.py _screenshot_delay)",
    }


def _trial(screen: MssScreen, clock: SystemClock, act: Callable[[], None], *,
           reset: Callable[[], None] | None = None) -> _Trial:
    if reset is not None:
        reset()
        wait_stable(screen, clock, timeout_s=TIMEOUT_S)
    before = thumbnail(screen.grab().rgb)
    act()
    settled = wait_stable(screen, clock, timeout_s=TIMEOUT_S, interval_s=INTERVAL_S,
                          quiet_frames=QUIET_FRAMES)
    trial = _Trial(settled.seconds, settled.stable, changed(before, thumbnail(settled.frame.rgb)))
    log.info("settled in %.0f ms (stable %s, changed %s)", trial.seconds * 1000, trial.stable,
             trial.changed)
    return trial


def _summary(trials: list[_Trial]) -> dict[str, Any]:
    ms = [t.seconds * 1000 for t in trials]
    return {
        "median_ms": round(statistics.median(ms), 1),
        "max_ms": round(max(ms), 1),
        "min_ms": round(min(ms), 1),
        "stable": sum(t.stable for t in trials),
        "changed": sum(t.changed for t in trials),
    }


def _saving(median_ms: float) -> dict[str, Any]:
    """Per fixed sleep: how many times longer it is, and the milliseconds saved per action."""
    return {f"{s:.1f}s": {"ratio": round(s * 1000 / median_ms, 1),
                        "saved_ms": round(s * 1000 - median_ms, 1)} for s in FIXED_SLEEPS_S}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its figures as JSON."""
    parser = argparse.ArgumentParser(prog="deskpilot bench settle",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(bench_settle(args.trials), indent=2))


if __name__ == "__main__":
    main()
