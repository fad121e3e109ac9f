"""What the command line prints: a line per step, how each task and run ended, and every other
line the commands write to the terminal, through :func:`say`.

Model answers, task names, screen text and error messages can hold terminal control sequences
(a colour, a new window title, a cleared screen, a faked line): :func:`say` writes every control
character out as a visible escape before anything reaches the terminal.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TextIO

from deskpilot.actions.text import printable
from deskpilot.agent.cli.errors import EXIT_FAILED, EXIT_OK
from deskpilot.agent.records import RunResult, Status, StepRecord
from deskpilot.agent.reports.outputs import Outputs, write_outputs
from deskpilot.agent.reports.summary import report_link
from deskpilot.agent.tasks.results import ScriptStep, SuiteResult, TaskResult
from deskpilot.agent.tasks.spec import Task


def say(*parts: object, file: TextIO | None = None, sep: str = " ", end: str = "\n",
        flush: bool = False) -> None:
    """``print`` for the command line, with control characters made visible."""
    text = printable(sep.join(str(p) for p in parts))
    print(text, file=file or sys.stdout, end=end, flush=flush)


def say_progress(text: str, *, last: bool, file: TextIO | None = None) -> None:
    """A progress line that redraws itself on a terminal (carriage return, our own control
    character) and, elsewhere, is written once when the work is done."""
    out = file or sys.stderr
    if out.isatty():
        out.write("\r" + printable(text) + ("\n" if last else ""))
        out.flush()
    elif last:
        say(text, file=out, flush=True)


def say_dim(text: str, *, file: TextIO | None = None) -> None:
    """Text shown dimmed on a terminal (a reasoning trace as it streams), plain elsewhere."""
    out = file or sys.stdout
    shown = printable(text)
    out.write(f"\x1b[2m{shown}\x1b[0m" if out.isatty() else shown)
    out.flush()


def print_step(step: StepRecord | ScriptStep) -> None:
    """One line per step, of the agent loop or of a task file."""
    say(step.line(), flush=True)


def print_result(result: RunResult) -> int:
    """Print how the run ended; return the exit code."""
    message = result.brief(200)
    say(f"\n{result.status.value}: {message}")
    if result.run_dir is not None:
        say(f"trajectory: {result.run_dir / 'trajectory.jsonl'}")
    return EXIT_OK if result.status is Status.DONE else EXIT_FAILED


def print_task(task: Task) -> None:
    """The heading of a task as it starts."""
    say(f"\n▶ {task.name}  ({task.path})", flush=True)


def print_task_result(result: TaskResult) -> None:
    """How a task ended, and where its records are."""
    say(f"  {result.status.word} in {result.seconds:.1f}s: {result.message}\n"
          f"  run: {result.run_dir}", flush=True)


def print_suite(suite: SuiteResult, outputs: Outputs) -> int:
    """Print the totals, write the files asked for (a line each) and, with a report, a line
    per task linking into it and how to open it; return the suite's exit code."""
    counts = suite.counts()
    say(f"\n{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors "
          f"in {suite.seconds:.1f}s")
    try:
        write_outputs(suite, outputs,
                      on_written=lambda label, path: say(f"{label + ':':<9}{path}"))
    except OSError as exc:  # a full disk: each file is written whole or not at all
        say(f"deskpilot: cannot write {exc.filename or 'the reports'}: {exc.strerror or exc}",
            file=sys.stderr)
        return EXIT_FAILED
    page = outputs.report_page
    if page is not None and suite.tasks:
        width = min(40, max(len(t.name) for t in suite.tasks))
        for n, task in enumerate(suite.tasks, 1):
            name = printable(task.name, one_line=True)
            say(f"  {task.status.word:<6} {name:<{width}}  {report_link(page, n, task)}")
        say(f"open the report: {open_command(page)}", flush=True)
    return EXIT_OK if suite.passed else EXIT_FAILED


def open_command(page: Path) -> str:
    """The shell command that opens ``page`` in the desktop's browser on this system."""
    opener = {"darwin": "open", "win32": "start \"\""}.get(sys.platform, "xdg-open")
    return f"{opener} {shlex.quote(str(page))}"
