"""What the command line prints as a run goes: a line per step, how each task and run ended."""

from __future__ import annotations

from deskpilot.agent.cli.errors import EXIT_FAILED, EXIT_OK
from deskpilot.agent.records import RunResult, Status, StepRecord
from deskpilot.agent.reports.outputs import Outputs, write_outputs
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
    """Print the totals, write the files asked for (a line each); return the suite's exit code."""
    counts = suite.counts()
    print(f"\n{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors "
          f"in {suite.seconds:.1f}s")
    write_outputs(suite, outputs, on_written=lambda label, path: print(f"{label + ':':<9}{path}"))
    return EXIT_OK if suite.passed else EXIT_FAILED
