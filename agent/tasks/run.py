"""Run loaded task files: setup, steps in order until one fails, teardown, and the records."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deskpilot.actions.approval import Approver, DenyAll
from deskpilot.actions.executor import InputDevice, release_all
from deskpilot.actions.gate import Gate
from deskpilot.actions.policy import Policy, Scope
from deskpilot.actions.redaction import Redaction
from deskpilot.agent.clock import Clock
from deskpilot.agent.rundir import RunDir, RunDirError
from deskpilot.agent.tasks.cache import CacheMode, GroundingCache
from deskpilot.agent.tasks.kit import ModelAccess, StepContext, StepFailed, off_screen
from deskpilot.agent.tasks.results import ScriptStep, SuiteResult, TaskResult, TaskStatus
from deskpilot.agent.tasks.spec import (
    LaunchSpec,
    SpecModel,
    Step,
    Task,
    WaitForWindow,
    baseline_folder,
    substitute,
)
from deskpilot.agent.tasks.steps import run_step
from deskpilot.grounding.a11y import A11yTree, CachedTree
from deskpilot.grounding.capture import CaptureError, Screen
from deskpilot.grounding.ocr import OcrError, TextReader
from deskpilot.grounding.stable import wait_stable
from deskpilot.grounding.textmatch import TextLookupError, find_text
from deskpilot.grounding.windows import WindowProbe
from deskpilot.grounding.xvfb import (
    DisplayError,
    close_windows,
    die_with_parent,
    display_env,
    is_private,
    point_at_window,
    stop_group,
    visible_windows,
    wait_for_window,
)
from deskpilot.models.runtime import RuntimeFailure

log = logging.getLogger(__name__)

CACHE_DIR = "deskpilot-cache"  # next to the task files, so a repository can keep it


class TaskInterrupted(KeyboardInterrupt):
    """Ctrl+C or a termination signal stopped a task; ``result`` is what it had done."""

    def __init__(self, result: TaskResult) -> None:
        super().__init__(result.message)
        self.result = result


class SetupError(RuntimeError):
    """A task's setup could not be completed (a program missing, a window that never came)."""


@dataclass
class Services:
    """The collaborators every task of a run shares."""

    screen: Screen
    device: InputDevice
    reader: TextReader
    cache_mode: CacheMode
    cache_dir: Path | None  # None: ``deskpilot-cache/`` next to each task file
    model: ModelAccess
    clock: Clock
    display: str
    runs_root: Path
    update_baselines: bool = False
    settle_s: float = 2.0
    approver: Approver = field(default_factory=DenyAll)  # headless: nobody to ask
    windows: WindowProbe | None = None  # None: window scope and terminal checks are off
    a11y: A11yTree | None = None  # None: no accessibility tree, targets are read as pixels


def slug(name: str) -> str:
    """A file-system-safe form of a task name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.").lower()[:60] or "task"


def run_suite(tasks: Sequence[Task], services: Services, *,
              on_task: Callable[[Task], None] | None = None,
              on_step: Callable[[ScriptStep], None] | None = None,
              on_result: Callable[[TaskResult], None] | None = None) -> SuiteResult:
    """Run every task in order (a failed task does not stop the others)."""
    started = dt.datetime.now().astimezone()
    t0 = services.clock.now()
    results = []
    interrupted = False
    for task in tasks:
        if on_task is not None:
            on_task(task)
        try:
            result = run_task(task, services, on_step=on_step)
        except TaskInterrupted as stop:  # keep what was done, so the reports still get written
            result, interrupted = stop.result, True
        results.append(result)
        if on_result is not None:
            on_result(result)
        if interrupted:
            break
    geometry = services.screen.geometry()
    return SuiteResult(tuple(results), services.clock.now() - t0,
                       started.isoformat(timespec="seconds"), services.display,
                       (geometry.pixel_width, geometry.pixel_height), interrupted)


def run_task(task: Task, services: Services, *,
             on_step: Callable[[ScriptStep], None] | None = None) -> TaskResult:
    """Set up, run the steps until one fails, and tear down; never raises for a task's fault."""
    try:
        run = TaskRun(task, services)
    except RunDirError as exc:  # nothing was done: there would be no record of it
        return TaskResult(task.name, task.path, TaskStatus.ERROR,
                          f"{exc} (nothing was done)", (), 0.0, None)
    try:
        try:
            run.open()
        except SetupError as exc:
            return run.finish(TaskStatus.ERROR, f"setup: {exc}")
        return run.finish(*_run_steps(run, on_step))
    except (CaptureError, DisplayError) as exc:
        return run.finish(TaskStatus.ERROR, f"the display failed: {exc}")
    except RuntimeFailure as exc:
        return run.finish(TaskStatus.ERROR, f"the model runtime failed: {exc}")
    except OcrError as exc:
        return run.finish(TaskStatus.ERROR, f"OCR failed: {exc}")
    except OSError as exc:  # a record that could not be written (a full disk): stop here
        return run.finish(TaskStatus.ERROR, f"cannot write the run's records: "
                                            f"{exc.strerror or exc} (no further input sent)")
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", None)
        why = f"terminated by signal {signum}" if signum else "interrupted by the person"
        raise TaskInterrupted(run.finish(TaskStatus.ERROR, why)) from exc
    except Exception as exc:  # one task's breakage (an input device error, say) ends only it
        log.exception("task %r broke", task.name)
        return run.finish(TaskStatus.ERROR, f"{type(exc).__name__}: {exc}")
    finally:
        run.close()


class TaskRun:
    """One task in progress: its run directory, values, gate, launched programs and records.

    :func:`run_task` drives one through a task file's steps; :class:`deskpilot.Desktop` drives
    one call by call. Either way :meth:`close` stops what was launched and releases the input.
    """

    def __init__(self, task: Task, services: Services) -> None:
        self.task, self.services = task, services
        self.start = services.clock.now()
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        self.record = RunDir(services.runs_root, name=f"{stamp}-{slug(task.name)}",
                             redaction=Redaction(task.secrets, services.reader))
        self.record.write_header({"task": task.name, "file": str(task.path),
                                  "display": services.display,
                                  "steps": [s.label for s in task.steps],
                                  "allow": sorted(task.allow)})
        self.steps: list[ScriptStep] = []
        self._stack = ExitStack()
        work_dir = Path(tempfile.mkdtemp(prefix=f"deskpilot-{slug(task.name)}-"))
        self._stack.callback(shutil.rmtree, work_dir, ignore_errors=True)
        values = {"work_dir": str(work_dir), "task_dir": str(task.path.parent.resolve()),
                  **{name: v.value for name, v in task.variables.items()}}
        self.ctx = StepContext(
            task=task, screen=services.screen, device=services.device, reader=services.reader,
            model=services.model,
            cache=GroundingCache(services.cache_dir or task.path.parent / CACHE_DIR,
                                 services.cache_mode),
            clock=services.clock, record=self.record, values=values,
            baselines=task.path.parent / "baselines" / baseline_folder(task.name),
            update_baselines=services.update_baselines,
            deadline=self.start + task.budget.timeout_s, settle_s=services.settle_s,
            windows=services.windows,
            a11y=None if services.a11y is None else CachedTree(services.a11y))
        self._windows_before: set[str] | None = None

    def open(self) -> None:
        """Check the steps against the screen, make the gate, launch the setup programs and
        wait for them (SetupError if any of that fails: before the first step)."""
        geometry = self.services.screen.geometry()
        problems = off_screen_steps(self.task, (geometry.pixel_width, geometry.pixel_height))
        if problems:
            raise SetupError("; ".join(problems))
        self.ctx.gate = _gate(self.task, self.services, self.record, self.ctx.values)
        for launch in self.task.setup.launch:
            self.launch(launch)
        if self.task.setup.wait_for is not None:
            _wait_setup(self.task.setup.wait_for, self.services, self.ctx)

    def launch(self, launch: LaunchSpec) -> subprocess.Popen[bytes]:
        """Start a program for this task (SetupError if it cannot); it is stopped by close."""
        if self._windows_before is None:  # the first launch: what was there before the task
            self._windows_before = visible_windows(self.services.display)
        return self._stack.enter_context(_launched(launch, self.services, self.record,
                                                   self.ctx))

    def step(self, step: Step, on_step: Callable[[ScriptStep], None] | None = None
             ) -> tuple[ScriptStep, StepFailed | None]:
        """Run one step and keep its record; the failure, if any, comes back beside it.

        OSError when the step list cannot be written: the caller stops before the next step.
        """
        result, failure = run_step(step, len(self.steps) + 1, self.ctx)
        self.steps.append(result)
        self._write_steps()  # kept as it goes: a killed run still leaves its steps behind
        if on_step is not None:
            on_step(result)
        return result, failure

    def finish(self, status: TaskStatus, message: str) -> TaskResult:
        """Write the steps and the task's result into its run directory.

        A record that cannot be written (a full disk) makes the task an error that says so;
        the result still comes back, for the reports written elsewhere.
        """
        message = self.record.redaction.text(message)
        try:
            self._write_steps()
            lost = self.record.flush()
        except OSError as exc:
            lost, status = 0, TaskStatus.ERROR
            message += f"; its records could not be written: {exc.strerror or exc}"
        if lost and status is TaskStatus.PASSED:
            status = TaskStatus.ERROR
            message += f"; {lost} screenshot(s) could not be written"
        result = TaskResult(self.task.name, self.task.path, status, message, tuple(self.steps),
                            self.services.clock.now() - self.start, self.record.path)
        try:
            self.record.finish_task(result.to_json())
        except OSError as exc:
            log.warning("cannot write the result of %r: %s", self.task.name, exc)
        return result

    def _write_steps(self) -> None:
        self.record.write_lines("steps.jsonl", [json.dumps(s.to_json(), ensure_ascii=False)
                                                for s in self.steps])

    def close(self) -> None:
        """Stop the launched programs, release held keys and buttons, drop the work folder,
        and make sure no window the task opened is left for the next task to click."""
        try:
            self._stack.close()
        finally:
            release_all(self.services.device)
        if self._windows_before is not None:
            _no_windows_left(self.services.display, self._windows_before)


def _gate(task: Task, services: Services, record: RunDir, values: dict[str, str]) -> Gate:
    """The task's safety gate: its scope, its ``allow`` list, and the text it supplies itself.

    Text the task file types itself (its ``type`` steps and variables) may look like a secret;
    the same text produced by the model in a ``do`` step is asked about.
    """
    supplied = [v for v in values.values() if v] + [
        substitute(s.spec.text, values) for s in task.steps if s.kind == "type"]
    try:
        policy = Policy(scope=Scope(region=task.scope.region, windows=task.scope.windows),
                        allow=task.allow, reader=services.reader, windows=services.windows,
                        task_text=supplied)
    except ValueError as exc:
        raise SetupError(f"scope: {exc}") from None
    return Gate(policy, services.approver, record, secrets=record.redaction)


def _run_steps(run: TaskRun, on_step: Callable[[ScriptStep], None] | None
               ) -> tuple[TaskStatus, str]:
    """Run the steps in order until one fails or the task's time is up."""
    task, ctx = run.task, run.ctx
    for index, step in enumerate(task.steps, 1):
        if ctx.clock.now() >= ctx.deadline:
            return TaskStatus.FAILED, (f"timed out after {task.budget.timeout_s:g}s before "
                                       f"step {index}")
        result, _ = run.step(step, on_step)
        if not result.passed:
            return TaskStatus.FAILED, (f"step {index} ({step.label}, line {step.line}): "
                                       f"{result.message}")
    return TaskStatus.PASSED, f"{len(run.steps)} steps passed"


@contextmanager
def _launched(launch: LaunchSpec, services: Services, record: RunDir,
              ctx: StepContext) -> Iterator[subprocess.Popen[bytes]]:
    """Start a setup program (no shell), wait for it when asked, and stop it afterwards.

    A secret value in the arguments is refused (every local user can read them); the
    launch's ``env`` carries it to the program instead.
    """
    command = substitute(launch.command, ctx.values)
    env = {name: substitute(value, ctx.values) for name, value in launch.env.items()}
    wait = launch.wait_for
    if any(secret in command for secret in record.redaction.secrets):
        raise SetupError("a secret value is in a launch command, where every local user can "
                         "read it (ps); pass it with the launch's env: instead")
    argv = shlex.split(command)
    if shutil.which(argv[0]) is None:
        raise SetupError(f"{argv[0]} is not installed or not on PATH")
    log_path = record.path / f"launch-{slug(Path(argv[0]).name)}.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # A session (and process group) of its own, stopped whole at teardown; and it dies
        # with this process if this one is killed outright.
        proc = subprocess.Popen(argv, env={**display_env(services.display), **env},
                                stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                start_new_session=True,
                                preexec_fn=die_with_parent)  # noqa: PLW1509 (a prctl only)
    except OSError as exc:
        raise SetupError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    try:
        if wait is not None:
            _wait_setup(wait, services, ctx, proc)
        yield proc
    finally:
        stop_group(proc)


def _wait_setup(wait: WaitForWindow, services: Services, ctx: StepContext,
                proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait for a setup window or text, never past the task's deadline.

    A window counts once it is mapped (viewable) and the screen has stopped changing (it is
    drawn). On a private display, which has no window manager and whose focus follows the
    pointer, the pointer is rested on it so that typed keys reach it.
    """
    timeout = ctx.bounded(wait.timeout_s)
    cut = "" if timeout >= wait.timeout_s else " (cut short by the task's budget timeout_s)"
    if wait.window is not None:
        started = services.clock.now()
        try:
            window = wait_for_window(services.display, wait.window, timeout_s=timeout)
        except DisplayError as exc:
            exited = "" if proc is None or proc.poll() is None else \
                f" (the program exited with status {proc.returncode})"
            raise SetupError(f"{exc}{exited}{cut}") from None
        # Without a window manager the focus follows the pointer: rest it on the new window.
        if is_private(services.display) and not point_at_window(services.display, window):
            log.warning("could not move the pointer onto window %s (%r)", window, wait.window)
        left = max(0.0, timeout - (services.clock.now() - started))
        settled = wait_stable(services.screen, services.clock, timeout_s=min(left, SETTLE_S),
                              quiet_frames=3)
        if not settled.stable:
            log.info("the screen still changed %.1fs after %r appeared", settled.seconds,
                     wait.window)
        return
    deadline = services.clock.now() + timeout
    query = substitute(wait.text or "", ctx.values)
    while True:
        try:
            find_text(services.reader.read(services.screen.grab().rgb), query)
            return
        except TextLookupError as exc:
            if services.clock.now() >= deadline:
                raise SetupError(f"{exc} within {timeout:g}s{cut}") from None
        services.clock.sleep(min(0.3, max(0.0, deadline - services.clock.now())))


SETTLE_S = 5.0  # at most, for a window that appeared to be drawn and still
WINDOWS_GONE_S = 2.0  # for the windows of stopped programs to disappear


def off_screen_steps(task: Task, size: tuple[int, int]) -> list[str]:
    """A reason for every point and region of the task that is not on a screen of ``size``."""
    problems = []
    if task.scope.region is not None and (why := off_screen(task.scope.region, size)):
        problems.append(f"scope: {why}")
    for step in task.steps:
        for name in ("at", "region"):
            value = getattr(step.spec, name, None) if isinstance(step.spec, SpecModel) else None
            if value is not None and (why := off_screen(tuple(value), size)):
                problems.append(f"step {step.position + 1} (line {step.line}) {name}: {why}")
    return problems


def _no_windows_left(display: str, before: set[str]) -> None:
    """Wait for the windows the task opened to go; close what is left on a private display."""
    deadline = time.monotonic() + WINDOWS_GONE_S
    while (left := visible_windows(display) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not left:
        return
    if is_private(display):
        log.warning("%d window(s) of the finished task were still open; closing them",
                    len(left))
        close_windows(display, left)
    else:
        log.warning("%d window(s) opened during the task are still on %s (not closed: the "
                    "display is not deskpilot's own)", len(left), display)
