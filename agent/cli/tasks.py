"""``deskpilot run FILE.yaml...``: task files on this display or a private one, with reports."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from deskpilot.agent.cli.console import (
    print_step,
    print_suite,
    print_task,
    print_task_result,
    say,
)
from deskpilot.agent.cli.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UserError
from deskpilot.agent.cli.options import RunOptions, as_lane, model_opener
from deskpilot.agent.tasks.file import TaskFileError, load_tasks
from deskpilot.agent.tasks.spec import Task

log = logging.getLogger(__name__)

TASK_SUFFIXES = (".yaml", ".yml")


def is_task_file(argument: str) -> bool:
    """True when a ``run`` argument names a task file rather than a task in words."""
    return argument.lower().endswith(TASK_SUFFIXES)


def run_task_files(options: RunOptions) -> int:
    """Load every file (exit 2 on any problem, before anything runs), run them, report."""
    if options.dry_run:
        # A task file's steps act on what earlier steps did (a dialog a click opened): with no
        # input sent, the later ones would check a screen that never changed. Refused, rather
        # than a plan that looks like a pass.
        raise UserError("--dry-run is for a task in words; task files cannot be dry-run "
                        "(their later steps depend on what the earlier ones did). Nothing was "
                        "run; check a file without running it by running it on a private "
                        "display: --headless --xvfb")
    bad = [a for a in options.tasks if not is_task_file(a)]
    if bad:
        raise UserError(f"{bad[0]!r} is not a task file (.yaml/.yml); a task in words is one "
                        "quoted argument")
    if (shard := options.files.shard) is not None:  # first: a --concurrency child counts alike
        options = _sharded(options, shard)
        if not options.tasks:
            say(f"shard {shard[0]}/{shard[1]} has no task files; nothing to run")
            return EXIT_OK
    lane = options.files.lane is not None  # one task of a --concurrency run, in a child process
    if lane:
        from deskpilot.agent.cli.lanes import stop_when_orphaned

        options = as_lane(options)
        stop_when_orphaned()
    try:
        tasks = load_tasks(Path(a) for a in options.tasks)
    except TaskFileError as exc:
        for problem in exc.problems:
            say(problem, file=sys.stderr)
        say(f"deskpilot: {len(exc.problems)} problem(s) in the task files; nothing was run",
              file=sys.stderr)
        return EXIT_USAGE
    for path in (options.outputs.junit, options.outputs.summary):
        if path is not None and path.is_dir():
            raise UserError(f"{path} is a directory; give a file name")
    files = options.files
    if files.concurrency > 1 and not lane:
        from deskpilot.agent.cli.lanes import run_lanes

        return run_lanes(tasks, options)
    new_display = files.xvfb or (files.headless and not os.environ.get("DISPLAY"))
    if not new_display and not os.environ.get("DISPLAY"):
        raise UserError("no display: DISPLAY is not set (add --headless to run on a private "
                        "Xvfb display)")
    return _run(tasks, options, new_display=bool(new_display))


def _sharded(options: RunOptions, shard: tuple[int, int]) -> RunOptions:
    from deskpilot.agent.tasks.shard import in_shard

    mine = in_shard(options.tasks, shard, os.path.normpath)
    log.info("shard %d/%d: %d of %d task files", *shard, len(mine), len(options.tasks))
    return replace(options, tasks=tuple(mine))


def _run(tasks: list[Task], options: RunOptions, *, new_display: bool) -> int:
    from deskpilot.actions.approval import default_approver
    from deskpilot.agent.rundir import default_runs_root
    from deskpilot.agent.tasks.kit import ModelAccess
    from deskpilot.agent.tasks.live import Place, live_services
    from deskpilot.agent.tasks.run import run_suite
    from deskpilot.grounding.capture import CaptureError
    from deskpilot.grounding.xvfb import DisplayError

    files = options.files
    opener = model_opener(options) if any(t.needs_model for t in tasks) else None
    place = Place(new_display=new_display, screen_size=files.screen_size,
                  runs_root=options.runs_dir or default_runs_root(), cache=files.cache,
                  cache_dir=files.cache_dir, update_baselines=files.update_baselines,
                  monitor=options.monitor, approver=default_approver(headless=files.headless))
    try:
        with live_services(place, ModelAccess(opener, options.settings)) as (services, started):
            geometry = services.screen.geometry()
            where = "a private Xvfb" if started else "this display"
            say(f"{len(tasks)} task file(s) on {where} {services.display} "
                  f"({geometry.pixel_width}x{geometry.pixel_height}); cache {files.cache}",
                  flush=True)
            suite = run_suite(tasks, services, on_task=print_task,
                              on_step=print_step, on_result=print_task_result)
    except (DisplayError, CaptureError, ValueError) as exc:
        raise UserError(str(exc)) from None
    code = print_suite(suite, options.outputs)
    if suite.interrupted:
        say("interrupted: the remaining tasks were not run", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
