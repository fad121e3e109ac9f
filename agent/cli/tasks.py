"""``deskpilot run FILE.yaml...``: task files on this display or a private one, with reports."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from deskpilot.agent.cli.console import print_script_step, print_task, print_task_result
from deskpilot.agent.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UserError
from deskpilot.agent.tasks.file import Task, TaskFileError, load_tasks
from deskpilot.agent.tasks.results import SuiteResult

if TYPE_CHECKING:
    from deskpilot.models.runtime import Runtime

log = logging.getLogger(__name__)

TASK_SUFFIXES = (".yaml", ".yml")


def is_task_file(argument: str) -> bool:
    """True when a ``run`` argument names a task file rather than a task in words."""
    return argument.lower().endswith(TASK_SUFFIXES)


def run_task_files(args: argparse.Namespace) -> int:
    """Load every file (exit 2 on any problem, before anything runs), run them, report."""

    bad = [a for a in args.task if not is_task_file(a)]
    if bad:
        raise UserError(f"{bad[0]!r} is not a task file (.yaml/.yml); a task in words is one "
                        "quoted argument")
    if args.lane is not None:  # one task of a --concurrency run, in a child process
        from deskpilot.agent.cli.lanes import as_lane

        as_lane(args)
    try:
        tasks = load_tasks(Path(a) for a in args.task)
    except TaskFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"deskpilot: {len(exc.problems)} problem(s) in the task files; nothing was run",
              file=sys.stderr)
        return EXIT_USAGE
    for path in (args.junit, args.summary):
        if path is not None and path.is_dir():
            raise UserError(f"{path} is a directory; give a file name")
    if args.concurrency > 1 and args.lane is None:
        from deskpilot.agent.cli.lanes import run_lanes

        return run_lanes(tasks, args)
    new_display = args.xvfb or (args.headless and not os.environ.get("DISPLAY"))
    if not new_display and not os.environ.get("DISPLAY"):
        raise UserError("no display: DISPLAY is not set (add --headless to run on a private "
                        "Xvfb display)")
    return _run(tasks, args, new_display=bool(new_display))


def _run(tasks: list[Task], args: argparse.Namespace, *, new_display: bool) -> int:
    from deskpilot.actions.approval import default_approver
    from deskpilot.actions.executor import PyAutoGuiDevice
    from deskpilot.agent.cli.words import _temperature
    from deskpilot.agent.clock import SystemClock
    from deskpilot.agent.loop import ModelSettings
    from deskpilot.agent.rundir import default_runs_root
    from deskpilot.agent.tasks.cache import CacheMode
    from deskpilot.agent.tasks.run import Services, run_suite
    from deskpilot.agent.tasks.steps import ModelAccess
    from deskpilot.grounding.capture import CaptureError, MssScreen
    from deskpilot.grounding.ocr import RapidOcrReader
    from deskpilot.grounding.windows import open_window_probe
    from deskpilot.grounding.xvfb import DisplayError, run_display
    from deskpilot.models.runtime import Mode

    opener = model_opener(args) if any(t.needs_model for t in tasks) else None
    model = ModelAccess(opener, ModelSettings(mode=Mode(args.mode), max_patches=args.max_patches,
                                              temperature=_temperature(args), zoom=args.zoom))
    try:
        with run_display(new=new_display, size=args.screen_size) as (display, started):
            try:
                screen = MssScreen(monitor=args.monitor)
                geometry = screen.geometry()
            except (CaptureError, ValueError) as exc:
                raise UserError(str(exc)) from None
            where = "a private Xvfb" if started else "this display"
            print(f"{len(tasks)} task file(s) on {where} {display} "
                  f"({geometry.pixel_width}x{geometry.pixel_height}); cache {args.cache}",
                  flush=True)
            windows = open_window_probe(display)
            services = Services(
                screen=screen, device=PyAutoGuiDevice(), reader=RapidOcrReader(),
                cache_mode=CacheMode(args.cache), cache_dir=args.cache_dir, model=model,
                clock=SystemClock(), display=display,
                runs_root=args.runs_dir or default_runs_root(),
                update_baselines=args.update_baselines,
                approver=default_approver(headless=args.headless), windows=windows)
            try:
                suite = run_suite(tasks, services, on_task=print_task,
                                  on_step=print_script_step, on_result=print_task_result)
            finally:
                model.close()
                screen.close()
                if windows is not None:
                    windows.close()
    except DisplayError as exc:
        raise UserError(str(exc)) from None
    code = write_outputs(suite, args)
    if suite.interrupted:
        print("interrupted: the remaining tasks were not run", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def model_opener(args: argparse.Namespace) -> Callable[[], Runtime]:
    """Check now that a model can be had (exit 2 if not); open it on the first model step."""
    from deskpilot.models.catalog import DEFAULT_MODEL, ModelError, resolve_model
    from deskpilot.models.open import open_runtime

    if args.replay is None and args.backend != "openai" and args.model != "tiny":
        try:
            resolve_model(args.model or DEFAULT_MODEL, mmproj=args.mmproj)
        except (ModelError, ValueError) as exc:
            raise UserError(f"these tasks have model steps: {exc}") from None

    def opener() -> Runtime:
        from deskpilot.models.timeout import TimeoutRuntime

        return TimeoutRuntime(open_runtime(model=args.model, mmproj=args.mmproj,
                                           replay=args.replay, n_ctx=args.n_ctx,
                                           gpu_layers=args.gpu_layers, backend=args.backend,
                                           base_url=args.base_url, constraint=args.constraint),
                               args.model_timeout)
    return opener


def write_outputs(suite: SuiteResult, args: argparse.Namespace) -> int:
    """Print the totals, write the files asked for; return the exit code of the suite."""
    from deskpilot.agent.reports.html import write_report
    from deskpilot.agent.reports.junit import write_junit
    from deskpilot.agent.reports.summary import write_summary

    counts = suite.counts()
    print(f"\n{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors "
          f"in {suite.seconds:.1f}s")
    if args.junit is not None:
        write_junit(args.junit, suite)
        print(f"junit:   {args.junit}")
    if args.summary is not None:
        write_summary(args.summary, suite)
        print(f"summary: {args.summary}")
    if args.report is not None:
        index = write_report(args.report, suite)
        print(f"report:  {index}")
    if args.result_json is not None:  # for the parent of a --concurrency run
        from deskpilot.agent.reports.lane import write_lane_result

        write_lane_result(args.result_json, suite)
    return EXIT_OK if suite.passed else EXIT_FAILED
