"""``deskpilot run "TASK"`` on an interactive terminal: the same run, under the interface."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from deskpilot.agent.cli.main import (
    EXIT_FAILED,
    gate_for_words,
    open_words_runtime,
    print_result,
    run_words,
    write_run_header,
)
from deskpilot.agent.records import RunResult
from deskpilot.agent.supervise import Controls

if TYPE_CHECKING:
    from deskpilot.actions.executor import InputDevice
    from deskpilot.agent.rundir import RunDir
    from deskpilot.grounding.capture import Screen
    from deskpilot.tui.app import Session


def run_in_tui(args: argparse.Namespace, *, screen: Screen, record: RunDir,
               device: InputDevice | None, kill_key: str | None) -> int:
    """Open the interface, run the task in its worker, print the outcome after it closes."""
    from deskpilot.agent.cli.main import takeover_watch
    from deskpilot.agent.takeover import describe_hotkey
    from deskpilot.tui.app import RunInfo
    from deskpilot.tui.launch import supervise

    controls = Controls()
    takeover = None if device is None else takeover_watch(
        kill_key, on_kill=lambda: controls.stop("stopped by the kill switch"), keys=False)
    g = screen.geometry()
    info = RunInfo(task=args.task, model="loading…", mode=args.mode,
                   screen=(g.left, g.top, g.width, g.height), run_dir=str(record.path),
                   # no listener, no kill switch: the status line then says how to stop
                   kill_key=describe_hotkey(kill_key) if kill_key and takeover else None,
                   dry_run=device is None)

    def job(session: Session) -> RunResult:
        runtime = open_words_runtime(args)
        try:
            session.on_loaded(runtime.name)
            write_run_header(args, record, runtime.name, screen, dry_run=device is None)
            gate = None if device is None else gate_for_words(args, record, session.approver)
            return run_words(args, runtime=runtime, screen=screen, device=device, record=record,
                             gate=gate, takeover=takeover, on_step=session.on_step,
                             supervisor=session.controls)
        finally:
            runtime.close()

    try:
        result, error = supervise(info, job, controls=controls,
                                  native_log=record.path / "native.log")
    finally:
        if takeover is not None:
            takeover.stop()
        screen.close()
    if result is None:
        print(f"deskpilot: {error}\nrun: {record.path}", file=sys.stderr)
        return EXIT_FAILED
    return print_result(result)
