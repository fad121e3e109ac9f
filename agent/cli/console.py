"""What the command line prints as a run goes: a line per step, how each task and run ended."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from deskpilot.agent.cli.errors import EXIT_FAILED, EXIT_OK
from deskpilot.agent.records import RunResult, Status, StepRecord
from deskpilot.agent.reports.outputs import Outputs, write_outputs
from deskpilot.agent.reports.summary import report_link
from deskpilot.agent.tasks.results import ScriptStep, SuiteResult, TaskResult
from deskpilot.agent.tasks.spec import Task


def print_step(step: StepRecord | ScriptStep) -> None:
    """One line per step, of the agent loop or of a task file."""
    print(step.line(), flush=True)


def print_result(result: RunResult) -> int:
    """Print how the run ended; return the exit code."""
    message = result.brief(200)
    print(f"\n{result.status.value}: {message}")
    if result.run_dir is not None:
        print(f"trajectory: {result.run_dir / 'trajectory.jsonl'}")
    return EXIT_OK if result.status is Status.DONE else EXIT_FAILED


def print_task(task: Task) -> None:
    """The heading of a task as it starts."""
    print(f"\n▶ {task.name}  ({task.path})", flush=True)


def print_task_result(result: TaskResult) -> None:
    """How a task ended, and where its records are."""
    print(f"  {result.status.word} in {result.seconds:.1f}s: {result.message}\n"
          f"  run: {result.run_dir}", flush=True)


def print_suite(suite: SuiteResult, outputs: Outputs) -> int:
    """Print the totals, write the files asked for (a line each) and, with a report, a line
    per task linking into it and how to open it; return the suite's exit code."""
    counts = suite.counts()
    print(f"\n{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors "
          f"in {suite.seconds:.1f}s")
    write_outputs(suite, outputs, on_written=lambda label, path: print(f"{label + ':':<9}{path}"))
    page = outputs.report_page
    if page is not None and suite.tasks:
        width = min(40, max(len(t.name) for t in suite.tasks))
        for n, task in enumerate(suite.tasks, 1):
            name = _printable(task.name)
            print(f"  {task.status.word:<6} {name:<{width}}  {report_link(page, n, task)}")
        print(f"open the report: {open_command(page)}", flush=True)
    return EXIT_OK if suite.passed else EXIT_FAILED


def open_command(page: Path) -> str:
    """The shell command that opens ``page`` in the desktop's browser on this system."""
    opener = {"darwin": "open", "win32": "start \"\""}.get(sys.platform, "xdg-open")
    return f"{opener} {shlex.quote(str(page))}"


def _printable(text: str) -> str:
    """Task names come from files: no control sequence reaches the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)
