"""``deskpilot.Desktop``: task-file steps called from Python, one method per step kind.

Every call builds the step a task file would hold (checked the same way), runs it through the
same :class:`~deskpilot.agent.tasks.run.TaskRun` as ``deskpilot run`` (validator, safety gate,
grounding cache, records), and raises a typed :class:`~.errors.StepError` when it fails. The
run directory ends up like a task file's, so :func:`write_report` can turn one or more desktops
into the HTML report, JUnit file or summary.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

from deskpilot.actions.approval import Approver, DenyAll
from deskpilot.agent.api.errors import DesktopError, SetupFailed, StepError, step_error
from deskpilot.agent.reports.outputs import Outputs, write_outputs
from deskpilot.agent.rundir import default_runs_root
from deskpilot.agent.settings import ModelSettings
from deskpilot.agent.tasks.cache import CacheMode
from deskpilot.agent.tasks.file import BUILTIN_VARIABLES, build_step, references
from deskpilot.agent.tasks.kit import ModelAccess
from deskpilot.agent.tasks.live import Place, live_services
from deskpilot.agent.tasks.results import ScriptStep, SuiteResult, TaskResult, TaskStatus
from deskpilot.agent.tasks.run import Services, SetupError, TaskRun
from deskpilot.agent.tasks.spec import (
    VARIABLE_NAME,
    BudgetSpec,
    LaunchSpec,
    ScopeSpec,
    SetupSpec,
    Task,
    Variable,
    WaitForWindow,
)
from deskpilot.models.choice import ModelChoice
from deskpilot.models.runtime import Reply, Request, Runtime, RuntimeFailure

log = logging.getLogger(__name__)

Region = tuple[int, int, int, int]
ModelArg = str | ModelChoice | Runtime | None
_ACTIVE: list[Desktop] = []  # input goes to one display per process: one open Desktop at a time


@dataclass(frozen=True, slots=True)
class _Borrowed:
    """A runtime the caller passed in: used, never closed (the caller may share it)."""

    inner: Runtime

    @property
    def name(self) -> str:
        return self.inner.name

    def complete(self, request: Request) -> Reply:
        return self.inner.complete(request)

    def close(self) -> None:
        pass


class Desktop:
    """A desktop to drive from Python: a private Xvfb (:meth:`headless`) or ``$DISPLAY``
    (:meth:`current`). Use it as a context manager; every call is one recorded step.

    >>> with Desktop.headless(size=(1280, 800)) as d:            # doctest: +SKIP
    ...     d.launch("xcalc", wait_for_window="Calculator")
    ...     d.click("7"); d.click("+"); d.click("8"); d.click("=")
    ...     d.expect("15")
    """

    def __init__(self, *, new_display: bool, size: tuple[int, int] = (1280, 800),
                 model: ModelArg = None, settings: ModelSettings | None = None,
                 name: str = "desktop", source: Path | None = None,
                 cache: CacheMode | str = CacheMode.READ_WRITE, cache_dir: Path | None = None,
                 runs_dir: Path | None = None, update_baselines: bool = False,
                 allow: Iterable[str] = (), variables: Mapping[str, str] | None = None,
                 secrets: Mapping[str, str] | None = None, approver: Approver | None = None,
                 timeout_s: float = 3600.0) -> None:
        self.name = name
        self.source = (source or _caller_file()).resolve()
        self._model, self._settings = model, settings or ModelSettings()
        self._place = Place(new_display=new_display, screen_size=size,
                            runs_root=runs_dir or default_runs_root(), cache=CacheMode(cache),
                            cache_dir=cache_dir, update_baselines=update_baselines,
                            approver=approver or DenyAll())
        self._task = Task(name=name, path=self.source, setup=SetupSpec(),
                          budget=BudgetSpec(timeout_s=timeout_s), scope=ScopeSpec(),
                          variables=_variables(variables or {}, secrets or {}),
                          allow=frozenset(allow), steps=())
        self._stack = ExitStack()
        self._run: TaskRun | None = None
        self._services: Services | None = None
        self._started = ""
        self._error = ""
        self._failure = ""
        self.result: TaskResult | None = None
        """What the desktop did, once it is closed (also handed to :func:`write_report`)."""

    @classmethod
    def headless(cls, size: tuple[int, int] = (1280, 800), **options: Any) -> Desktop:
        """A desktop on its own private Xvfb display of ``size`` pixels (needs Xvfb)."""
        options.setdefault("source", _caller_file())
        return cls(new_display=True, size=size, **options)

    @classmethod
    def current(cls, **options: Any) -> Desktop:
        """The desktop ``$DISPLAY`` shows (the person's own screen: the gate asks first)."""
        if not os.environ.get("DISPLAY"):
            raise SetupFailed("DISPLAY is not set; use Desktop.headless() for a private display")
        options.setdefault("source", _caller_file())
        return cls(new_display=False, **options)

    # --- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> Desktop:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, AssertionError):
            self.fail(f"AssertionError: {exc}")
        elif exc is not None and not isinstance(exc, StepError):
            self._error = f"{type(exc).__name__}: {exc}"
        self.close()

    def open(self) -> Desktop:
        """Start the display (when private) and the task's records; SetupFailed if it cannot."""
        if self._run is not None:
            return self
        if _ACTIVE:
            raise DesktopError("another Desktop is open in this process; close it first "
                               "(input goes to one display per process)")
        from deskpilot.grounding.capture import CaptureError
        from deskpilot.grounding.xvfb import DisplayError

        self._started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        access = ModelAccess(self._opener(), self._settings)
        try:
            self._services, _ = self._stack.enter_context(live_services(self._place, access))
            self._run = TaskRun(self._task, self._services)
            self._stack.callback(self._run.close)
            self._run.open()
        except (DisplayError, CaptureError, SetupError, ValueError) as exc:
            self._stack.close()
            self._run = None
            raise SetupFailed(str(exc)) from None
        _ACTIVE.append(self)
        return self

    def close(self) -> TaskResult:
        """Stop what was launched, close the display, and write the records; the result."""
        if self.result is not None:
            return self.result
        run = self._require()
        failed = next((s for s in run.steps if not s.passed), None)
        if self._error:
            status, message = TaskStatus.ERROR, self._error
        elif failed is not None:
            status = TaskStatus.FAILED
            message = f"step {failed.index} ({failed.label}, line {failed.file_line}): " \
                      f"{failed.message}"
        elif self._failure:
            status, message = TaskStatus.FAILED, self._failure
        else:
            status, message = TaskStatus.PASSED, f"{len(run.steps)} steps passed"
        try:
            self.result = run.finish(status, message)
        finally:
            _ACTIVE.remove(self)
            self._stack.close()
        return self.result

    def fail(self, reason: str) -> None:
        """Record that the desktop's task failed for a reason of the caller's (an assertion of
        the test using it, say), so its result and the report say so."""
        self._failure = reason

    @property
    def display(self) -> str:
        """The X display name (``":7"``)."""
        return self._require_services().display

    @property
    def run_dir(self) -> Path:
        """The folder where this desktop's screenshots and records go."""
        return self._require().record.path

    @property
    def steps(self) -> tuple[ScriptStep, ...]:
        """The records of the steps so far."""
        return tuple(self._require().steps)

    # --- steps ----------------------------------------------------------------------------

    def launch(self, command: str, *, wait_for_window: str | None = None,
               wait_for_text: str | None = None, timeout_s: float = 10.0,
               env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a program (split like a shell would, run without one) on this display; it is
        stopped when the desktop closes. SetupFailed when it cannot start or its window or
        text does not appear within ``timeout_s``. ``env`` adds environment variables for it
        (the way to hand it a secret: arguments are visible to every local user)."""
        run = self._require()
        wait = None
        if wait_for_window is not None or wait_for_text is not None:
            wait = WaitForWindow(window=wait_for_window, text=wait_for_text, timeout_s=timeout_s)
        try:
            return run.launch(LaunchSpec(command=command, wait_for=wait, env=dict(env or {})))
        except SetupError as exc:
            raise SetupFailed(str(exc)) from None

    def click(self, text: str | None = None, *, target: str | None = None,
              at: tuple[int, int] | None = None, region: Region | None = None,
              button: Literal["left", "right", "middle"] = "left", clicks: int = 1
              ) -> ScriptStep:
        """Click text found on the screen, a ``target`` the model locates, or a point ``at``."""
        return self._step("click", _given(text=text, target=target, at=at, region=region,
                                          button=button if button != "left" else None,
                                          clicks=clicks if clicks != 1 else None))

    def type(self, text: str) -> ScriptStep:
        """Type ``text`` into the focused window (``${name}`` fills in a variable)."""
        run = self._require()
        if run.ctx.gate is not None:  # the caller's own text, like a task file's type step
            run.ctx.gate.policy.supply(run.ctx.text(text))
        return self._step("type", text)

    def key(self, chord: str) -> ScriptStep:
        """Press a key or chord (``enter``, ``ctrl+s``)."""
        return self._step("key", chord)

    def scroll(self, direction: Literal["up", "down", "left", "right"] = "down",
               amount: int = 3, *, at: tuple[int, int] | None = None, text: str | None = None,
               region: Region | None = None) -> ScriptStep:
        """Scroll ``amount`` notches over a point, text, or the screen's centre."""
        return self._step("scroll", _given(direction=direction, amount=amount, at=at,
                                           text=text, region=region))

    def wait(self, seconds: float) -> ScriptStep:
        """Wait a fixed time."""
        return self._step("wait", seconds)

    def wait_for(self, text: str, *, region: Region | None = None,
                 timeout_s: float = 10.0) -> ScriptStep:
        """Wait until ``text`` is on the screen."""
        return self._step("wait_for", _given(text=text, region=region, timeout_s=timeout_s))

    def expect(self, text: str, *, region: Region | None = None,
               timeout_s: float = 10.0) -> ScriptStep:
        """Fail (ExpectationFailed) unless ``text`` shows within ``timeout_s``."""
        return self._step("expect", _given(text=text, region=region, timeout_s=timeout_s))

    def expect_not(self, text: str, *, region: Region | None = None,
                   timeout_s: float = 10.0) -> ScriptStep:
        """Fail unless ``text`` is gone within ``timeout_s``."""
        return self._step("expect_not", _given(text=text, region=region, timeout_s=timeout_s))

    def expect_file(self, path: str | Path, *, contains: str | None = None) -> ScriptStep:
        """Fail unless the file exists (and holds ``contains``)."""
        return self._step("expect_file", _given(path=str(path), contains=contains))

    def screenshot(self, name: str, *, compare: bool = False, region: Region | None = None,
                   tolerance: float | None = None, pixel_threshold: int | None = None
                   ) -> ScriptStep:
        """Keep a named screenshot; with ``compare``, fail when it differs from its baseline
        (``baselines/<name of this desktop>/`` beside the calling file; made on first use)."""
        return self._step("screenshot", _given(name=name, compare=compare or None,
                                               region=region, tolerance=tolerance,
                                               pixel_threshold=pixel_threshold))

    def do(self, instruction: str) -> ScriptStep:
        """Let the agent loop carry out ``instruction`` with the model (ModelStepFailed if not)."""
        return self._step("do", instruction)

    def check(self, statement: str) -> bool:
        """Whether the model judges that ``statement`` holds on the screen now.

        A judgement either way is recorded; an unusable answer raises ModelStepFailed.
        """
        from deskpilot.agent.tasks.kit import StatementFalse

        step, failure = self._attempt("check", statement)
        if failure is None:
            return True
        if isinstance(failure, StatementFalse):
            return False
        raise step_error(step, failure, self.run_dir)

    def query(self, question: str) -> str:
        """The model's short answer to ``question`` about the screen (a number, a name)."""
        self._step("query", {"ask": question, "save_as": "answer"})
        return self._require().ctx.values["answer"]

    # --- inside ---------------------------------------------------------------------------

    def _opener(self) -> Any:
        model = self._model
        if model is None:
            return None
        if isinstance(model, str):
            model = ModelChoice(model=model)
        if isinstance(model, ModelChoice):
            from deskpilot.models.open import open_runtime

            try:
                choice = model.checked()
            except ValueError as exc:
                raise SetupFailed(str(exc)) from None
            return lambda: open_runtime(choice)
        borrowed = _Borrowed(model)
        return lambda: borrowed

    def _require(self) -> TaskRun:
        if self._run is None:
            raise DesktopError("the desktop is not open; use `with Desktop.headless() as d:` "
                               "or call open()")
        return self._run

    def _require_services(self) -> Services:
        self._require()
        assert self._services is not None
        return self._services

    def _step(self, kind: str, value: Any) -> ScriptStep:
        step, failure = self._attempt(kind, value)
        if failure is not None:
            raise step_error(step, failure, self.run_dir)
        return step

    def _attempt(self, kind: str, value: Any) -> tuple[ScriptStep, Any]:
        run = self._require()
        line = _caller_line(self.source)
        where = f"{self.source.name}:{line}: " if line else ""
        try:
            step = build_step(kind, value, position=len(run.steps), line=line)
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
        known = set(run.ctx.values) | set(BUILTIN_VARIABLES)
        if missing := sorted(set(references(step.spec)) - known):
            raise ValueError(f"{where}unknown variable ${{{missing[0]}}} (defined: "
                             f"{', '.join(sorted(known))})")
        try:
            return run.step(step)
        except RuntimeFailure as exc:
            self._error = f"the model runtime failed: {exc}"
            raise DesktopError(self._error) from exc


def write_report(desktops: Sequence[Desktop | TaskResult], *, report: Path | None = None,
                 junit: Path | None = None, summary: Path | None = None) -> SuiteResult:
    """Write the HTML report (a folder), JUnit file and/or JSON summary for closed desktops
    (or their results), exactly as ``deskpilot run`` writes them for task files."""
    results = tuple(d if isinstance(d, TaskResult) else d.close() for d in desktops)
    suite = SuiteResult(results, sum(r.seconds for r in results),
                        dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    write_outputs(suite, Outputs(junit=junit, summary=summary, report=report))
    return suite


def _given(**fields: Any) -> dict[str, Any]:
    """The fields a caller gave (None: not given), the way a task file would spell them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()
            if v is not None}


def _variables(plain: Mapping[str, str], secret: Mapping[str, str]) -> dict[str, Variable]:
    out: dict[str, Variable] = {}
    for values, is_secret in ((plain, False), (secret, True)):
        for name, value in values.items():
            if not VARIABLE_NAME.match(name) or name in BUILTIN_VARIABLES or name == "answer":
                raise ValueError(f"variable name {name!r}: letters, digits and _, not one of "
                                 f"{', '.join((*BUILTIN_VARIABLES, 'answer'))}")
            out[name] = Variable(str(value), secret=is_secret)
    return out


def _caller_file() -> Path:
    """The source file of the nearest caller outside deskpilot (the test or the script)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if not str(frame.f_globals.get("__name__", "")).startswith("deskpilot.") \
                and path.is_file():
            return path
        frame = frame.f_back
    return Path.cwd() / "desktop.py"


def _caller_line(source: Path) -> int:
    """The line in ``source`` that made the current call (0 when it came from elsewhere)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == str(source) or \
                Path(frame.f_code.co_filename).resolve() == source:
            return frame.f_lineno
        frame = frame.f_back
    return 0
