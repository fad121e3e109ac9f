"""``deskpilot run "TASK"``: one task in words on this display, with a line per step or under
the supervision interface."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from deskpilot.agent.cli.console import print_result, print_step, say
from deskpilot.agent.cli.errors import EXIT_FAILED, UserError
from deskpilot.agent.cli.options import RunOptions
from deskpilot.agent.records import RunResult, StepRecord
from deskpilot.agent.supervise import Controls

if TYPE_CHECKING:
    from deskpilot.actions.approval import Approver
    from deskpilot.actions.executor import InputDevice
    from deskpilot.actions.gate import Gate
    from deskpilot.agent.rundir import RunDir
    from deskpilot.agent.supervise import Supervisor
    from deskpilot.agent.takeover import TakeoverWatch
    from deskpilot.grounding.capture import Screen
    from deskpilot.models.choice import ModelChoice
    from deskpilot.models.runtime import Runtime
    from deskpilot.tui.app import Session


def run_words_command(options: RunOptions) -> int:
    """Run the task in words on the current display, under the interface or with plain lines."""
    from deskpilot.actions.executor import PyAutoGuiDevice
    from deskpilot.agent.rundir import RunDir, RunDirError, default_runs_root
    from deskpilot.grounding.capture import CaptureError, MssScreen
    from deskpilot.grounding.checked import CheckedScreen

    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        raise UserError("no display: DISPLAY is not set (run inside an X session, or start "
                        "Xvfb and set DISPLAY; `deskpilot doctor` checks this)")
    kill_key = _kill_key(options.kill_key)
    try:
        # A black or blank screenshot (a locked or sleeping screen) is retried, then ends the run.
        screen = CheckedScreen(MssScreen(monitor=options.monitor))
        screen.geometry()
    except (CaptureError, ValueError) as exc:
        raise UserError(str(exc)) from None
    try:
        record = RunDir(options.runs_dir or default_runs_root())
    except RunDirError as exc:
        screen.close()
        raise UserError(f"{exc} (nothing was done)") from None
    device = None if options.dry_run else PyAutoGuiDevice()
    if wants_tui(options):
        return run_in_tui(options, screen=screen, record=record, device=device,
                          kill_key=kill_key)
    try:
        runtime = open_words_runtime(options)
    except UserError:
        screen.close()
        raise
    gate = None if device is None else gate_for_words(options, record)
    header = write_run_header(options, record, runtime.name, screen, dry_run=device is None)
    say(f"{header}\nrun: {record.path}\n", flush=True)
    takeover = None if device is None else takeover_watch(kill_key, on_kill=_interrupt_main)
    try:
        result = run_words(options, runtime=runtime, screen=screen, device=device,
                           record=record, gate=gate, takeover=takeover, on_step=print_step)
    finally:
        if takeover is not None:
            takeover.stop()
        runtime.close()
        screen.close()
    return print_result(result)


def wants_tui(options: RunOptions) -> bool:
    """The interface opens for a task in words on an interactive terminal, unless --no-tui."""
    return not options.no_tui and sys.stdin.isatty() and sys.stdout.isatty()


def gate_for_words(options: RunOptions, record: RunDir, approver: Approver | None = None
                   ) -> Gate:
    """The safety gate for a task in words: the person approves, at this terminal by default."""
    from deskpilot.actions.approval import default_approver
    from deskpilot.actions.gate import Gate
    from deskpilot.actions.policy import Policy, Scope
    from deskpilot.grounding.ocr import RapidOcrReader
    from deskpilot.grounding.windows import open_window_probe

    safety = options.safety
    try:
        policy = Policy(scope=Scope(region=safety.region, windows=safety.windows),
                        allow=safety.allow, reader=RapidOcrReader(),
                        windows=open_window_probe(os.environ.get("DISPLAY", "")),
                        task_text=[options.task])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return Gate(policy, approver or default_approver(headless=False), record)


def open_words_runtime(options: RunOptions, choice: ModelChoice | None = None) -> Runtime:
    """The model for a task in words (or ``choice``, the grounder), behind its deadline;
    UserError when it cannot be had."""
    from deskpilot.models.catalog import ModelError
    from deskpilot.models.open import open_runtime
    from deskpilot.models.runtime import RuntimeFailure

    try:
        return open_runtime(choice or options.model)
    except (ModelError, RuntimeFailure, ValueError) as exc:
        raise UserError(f"{exc} (nothing was done)") from None


def write_run_header(options: RunOptions, record: RunDir, model: str, screen: Screen, *,
                     dry_run: bool) -> str:
    """Write the run's header record; return the same facts as text for the person."""
    g = screen.geometry()
    mode = options.settings.mode.value
    record.write_header({"task": options.task, "model": model, "mode": mode,
                         "screen": [g.left, g.top, g.width, g.height, g.scale],
                         "dry_run": dry_run, "max_patches": options.settings.max_patches})
    return (f"task: {options.task}\nmodel: {model}   mode: {mode}   screen: "
            f"{g.width}x{g.height}+{g.left}+{g.top} (scale {g.scale:g})   "
            f"{'DRY RUN' if dry_run else 'live input'}")


def run_words(options: RunOptions, *, runtime: Runtime, screen: Screen,
              device: InputDevice | None, record: RunDir, gate: Gate | None,
              takeover: TakeoverWatch | None, on_step: Callable[[StepRecord], object],
              supervisor: Supervisor | None = None) -> RunResult:
    """The agent loop with the budgets and model settings the command line asked for."""
    from deskpilot.agent.loop import run_agent

    grounder = None if options.grounder is None else open_words_runtime(options, options.grounder)
    try:
        return run_agent(options.task, runtime=runtime, screen=screen, device=device,
                         record=record, budget=options.budget, settings=options.settings,
                         gate=gate, takeover=takeover, on_step=on_step, supervisor=supervisor,
                         grounder=grounder)
    finally:
        if grounder is not None:
            grounder.close()


def _kill_key(text: str) -> str | None:
    """The kill-switch hotkey in pynput's syntax, or None for --kill-key off."""
    if text.lower() in ("off", "none", ""):
        return None
    from deskpilot.agent.takeover import parse_hotkey

    try:
        return parse_hotkey(text)
    except ValueError as exc:
        raise UserError(f"--kill-key: {exc}") from None


def _interrupt_main() -> None:
    """The kill switch without the interface: unwind the main thread as Ctrl+C does."""
    os.kill(os.getpid(), signal.SIGINT)


def takeover_watch(kill_key: str | None, *, on_kill: Callable[[], None], keys: bool = True
                    ) -> TakeoverWatch | None:
    """Listen for the person's own input and the kill switch; without them only after a warning.
    """
    from deskpilot.agent.takeover import TakeoverWatch

    try:
        return TakeoverWatch(kill_hotkey=kill_key, on_kill=on_kill, keys=keys).start()
    except (RuntimeError, OSError) as exc:
        say(f"warning: {exc}; moving the mouse will not stop the agent (Ctrl+C will)",
              file=sys.stderr)
        return None


def run_in_tui(options: RunOptions, *, screen: Screen, record: RunDir,
               device: InputDevice | None, kill_key: str | None) -> int:
    """Open the interface, run the task in its worker, print the outcome after it closes."""
    from deskpilot.agent.takeover import describe_hotkey
    from deskpilot.tui.app import RunInfo
    from deskpilot.tui.launch import supervise

    controls = Controls()
    takeover = None if device is None else takeover_watch(
        kill_key, on_kill=lambda: controls.stop("stopped by the kill switch"), keys=False)
    g = screen.geometry()
    info = RunInfo(task=options.task, model="loading…", mode=options.settings.mode.value,
                   screen=(g.left, g.top, g.width, g.height), run_dir=str(record.path),
                   # no listener, no kill switch: the status line then says how to stop
                   kill_key=describe_hotkey(kill_key) if kill_key and takeover else None,
                   dry_run=device is None)

    def job(session: Session) -> RunResult:
        runtime = open_words_runtime(options)
        try:
            session.on_loaded(runtime.name)
            write_run_header(options, record, runtime.name, screen, dry_run=device is None)
            gate = None if device is None else gate_for_words(options, record, session.approver)
            return run_words(options, runtime=runtime, screen=screen, device=device,
                             record=record, gate=gate, takeover=takeover,
                             on_step=session.on_step, supervisor=session.controls)
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
        say(f"deskpilot: {error}\nrun: {record.path}", file=sys.stderr)
        return EXIT_FAILED
    return print_result(result)
