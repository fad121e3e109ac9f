"""``deskpilot demo``: replay the recorded xcalc run on a private display and check it."""

from __future__ import annotations

import os
from pathlib import Path

from deskpilot.agent.cli.main import EXIT_FAILED, EXIT_OK, UserError, print_step
from deskpilot.agent.cli.replay import EXPECTED, SCREEN, check_display, replay_xcalc
from deskpilot.agent.rundir import RunDir, RunDirError, default_runs_root
from deskpilot.grounding.xvfb import DisplayError, xvfb


def run_demo(runs_dir: Path | None) -> int:
    """Start Xvfb and xcalc, replay the recording through the real loop, check the display."""
    print("deskpilot demo: a REPLAY of recorded model answers (no model is loaded).\n"
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
    print(f"\n{result.status.value}: model answered {result.answer!r}")
    verdict = ("matches" if check.matches
               else f"does NOT match ({check.differing_pixels} pixels differ)")
    print(f"screen check: the calculator display {verdict} a calculator showing "
          f"{EXPECTED!r}")
    print(f"trajectory and screenshots: {record.path}")
    return EXIT_OK if result.status.ok and check.matches else EXIT_FAILED
