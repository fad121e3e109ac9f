"""The pytest plugin (entry point ``pytest11``): task files as tests, and a ``desktop`` fixture.

- Task files matching ``deskpilot_patterns`` (default ``*.desk.yaml`` and
  ``tests/**/deskpilot/*.yaml``) are collected, one test per file, each run on its own private
  Xvfb display by the task runner ``deskpilot run`` uses.
- The ``desktop`` fixture is a :class:`deskpilot.Desktop` on a private display of its own.
- ``--deskpilot-report DIR`` writes one HTML report for the session; under pytest-xdist the
  workers hand their results to the controller, which writes it.
- ``--shard K/N`` keeps the K-th of N shards of the test files (any tests, not only task files).

Nothing heavy is imported until a task or the fixture runs: pytest loads this module in every
session of an environment where deskpilot is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from deskpilot.agent import argtypes

if TYPE_CHECKING:
    from deskpilot.agent.api.desktop import Desktop
    from deskpilot.agent.tasks.results import TaskResult
    from deskpilot.agent.tasks.spec import Task
    from deskpilot.models.choice import Constraint

DEFAULT_PATTERNS = ("*.desk.yaml", "tests/**/deskpilot/*.yaml")
RESULTS_KEY = "deskpilot_results"  # what an xdist worker hands the controller
_results_key = pytest.StashKey[list[dict[str, Any]]]()
_report_key = pytest.StashKey[tuple[Path, int]]()
_call_key = pytest.StashKey[pytest.TestReport]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deskpilot", "deskpilot desktop tests")
    group.addoption("--deskpilot-report", type=Path, metavar="DIR",
                    help="write the HTML report of every task file and desktop test to DIR")
    group.addoption("--deskpilot-model", metavar="NAME",
                    help="vision model for model steps: a catalog name, a GGUF path, or tiny "
                         "(with --deskpilot-base-url: the name the server serves)")
    group.addoption("--deskpilot-base-url", metavar="URL",
                    help="an OpenAI-compatible server (llama-server, vLLM) to ask instead of "
                         "loading the model in each worker")
    group.addoption("--deskpilot-constraint", type=_constraint, metavar="HOW",
                    help="how a server holds answers to the format: grammar (llama-server, "
                         "the default), json_schema (vLLM) or none")
    group.addoption("--deskpilot-cache", type=_cache_mode, default="read-write", metavar="MODE",
                    help="grounding cache: read-write (default), read-only (for CI: a stale "
                         "entry fails the step) or off")
    group.addoption("--deskpilot-cache-dir", type=Path, metavar="DIR",
                    help="where cached targets live (default: deskpilot-cache/ beside each "
                         "task file or test file)")
    group.addoption("--deskpilot-screen-size", type=argtypes.size, default=(1280, 800),
                    metavar="WxH", help="size of each private display (default 1280x800)")
    group.addoption("--deskpilot-runs-dir", type=Path, metavar="DIR",
                    help="where run folders go (default $DESKPILOT_RUNS or "
                         "~/.local/state/deskpilot/runs)")
    group.addoption("--shard", type=argtypes.shard, metavar="K/N",
                    help="run only the K-th of N shards of the test files (files sorted by "
                         "path, cut into N even groups), for a CI matrix")
    parser.addini("deskpilot_patterns", type="linelist", default=list(DEFAULT_PATTERNS),
                  help="glob patterns (relative to rootdir; ** spans folders) of the task "
                       "files collected as tests")


def _cache_mode(text: str) -> str:
    from deskpilot.agent.tasks.cache import CacheMode

    try:
        return CacheMode(text).value
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: one of {', '.join(m.value for m in CacheMode)}") from None


def _constraint(text: str) -> str:
    from deskpilot.models.choice import CONSTRAINTS

    if text not in CONSTRAINTS:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(CONSTRAINTS)}")
    return text


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_results_key] = []
    config.addinivalue_line("markers", "deskpilot: a deskpilot task file or desktop test")


# --- collection -------------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix.lower() not in (".yaml", ".yml"):
        return None
    config = parent.config
    try:
        relative = file_path.relative_to(config.rootpath).as_posix()
    except ValueError:
        relative = file_path.name
    if any(_glob(p).fullmatch(relative) for p in config.getini("deskpilot_patterns")):
        return TaskFile.from_parent(parent, path=file_path)
    return None


def _glob(pattern: str) -> re.Pattern[str]:
    """A glob as a regex: ``*`` within a folder, ``**/`` across folders; a pattern without
    ``/`` matches a file name anywhere."""
    out = "" if "/" in pattern else "(?:.*/)?"
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


class TaskFile(pytest.File):
    """A task file: one test, or a collection error listing each problem with its line."""

    def collect(self) -> Iterator[pytest.Item]:
        from deskpilot.agent.tasks.file import load_task

        task = load_task(self.path)
        yield TaskItem.from_parent(self, name=task.name, task=task)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        from deskpilot.agent.tasks.file import TaskFileError

        if isinstance(excinfo.value, TaskFileError):
            from deskpilot.actions.text import printable

            return "\n".join(printable(p) for p in excinfo.value.problems)
        return str(super().repr_failure(excinfo))


class TaskFailed(Exception):
    """A collected task file did not pass."""

    def __init__(self, result: TaskResult) -> None:
        super().__init__(result.message)
        self.result = result


class TaskItem(pytest.Item):
    """One task file run as a test on its own private display."""

    def __init__(self, *, task: Task, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.add_marker("deskpilot")

    def runtest(self) -> None:
        from deskpilot.agent.tasks.kit import ModelAccess
        from deskpilot.agent.tasks.live import live_services
        from deskpilot.agent.tasks.results import TaskStatus
        from deskpilot.agent.tasks.run import run_task

        settings = _Settings.of(self.config)
        opener = settings.opener() if self.task.needs_model else None
        with live_services(settings.place(), ModelAccess(opener)) as (services, _):
            result = run_task(self.task, services)
        _keep(self.config, result)
        _attach(self, result)
        if result.status is not TaskStatus.PASSED:
            raise TaskFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if not isinstance(excinfo.value, TaskFailed):
            return str(super().repr_failure(excinfo))
        from deskpilot.actions.text import printable

        result = excinfo.value.result
        lines = [f"{result.file}: task {result.name!r} {result.status.value}: {result.message}"]
        failed = result.failed_step
        if failed is not None:
            lines.append(f"  step {failed.index} at line {failed.file_line}: {failed.label}")
            if failed.candidates:
                lines.append(f"  candidates: {'; '.join(c.text for c in failed.candidates[:5])}")
            if failed.screenshot and result.run_dir is not None:
                lines.append(f"  screenshot: {result.run_dir / failed.screenshot}")
        if result.run_dir is not None:
            lines.append(f"  run folder: {result.run_dir}")
        # Task names, screen text and model answers may hold escape sequences: show, never obey.
        return "\n".join(printable(line) for line in lines)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"task file: {self.task.name}"


# --- the desktop fixture -----------------------------------------------------------------------


@pytest.fixture
def desktop(request: pytest.FixtureRequest) -> Iterator[Desktop]:
    """A :class:`deskpilot.Desktop` on a private Xvfb display of its own, closed after the test.

    Model steps use ``--deskpilot-model``/``--deskpilot-base-url``; baselines and the cache go
    beside the test file, as they go beside a task file.
    """
    from deskpilot.agent.api.desktop import Desktop

    settings = _Settings.of(request.config)
    place = settings.place()
    with Desktop(new_display=True, size=place.screen_size, model=settings.model_choice(),
                 name=request.node.name, source=request.node.path, cache=place.cache,
                 cache_dir=place.cache_dir, runs_dir=place.runs_root) as d:
        yield d
        call = request.node.stash.get(_call_key, None)
        if call is not None and call.failed:  # the test's own assertion, say: the report says so
            lines = call.longreprtext.strip().splitlines()
            d.fail(f"the test failed: {lines[-1] if lines else 'see its output'}")
    if d.result is not None:
        _keep(request.config, d.result)
        _attach(request.node, d.result)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call phase's report on the item, for the fixture's teardown to read."""
    report = yield
    if report.when == "call":
        item.stash[_call_key] = report
    return report


# --- results, shards and the session's report ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Settings:
    """The deskpilot options of this pytest session."""

    model: str | None
    base_url: str | None
    constraint: str | None
    cache: str
    cache_dir: Path | None
    size: tuple[int, int]
    runs_dir: Path | None

    @classmethod
    def of(cls, config: pytest.Config) -> _Settings:
        return cls(config.getoption("deskpilot_model"), config.getoption("deskpilot_base_url"),
                   config.getoption("deskpilot_constraint"),
                   config.getoption("deskpilot_cache"), config.getoption("deskpilot_cache_dir"),
                   config.getoption("deskpilot_screen_size"),
                   config.getoption("deskpilot_runs_dir"))

    def model_choice(self) -> Any:
        from deskpilot.models.choice import ModelChoice

        if self.model is None and self.base_url is None:
            return None
        try:
            choice = ModelChoice(model=self.model, base_url=self.base_url,
                                 backend="openai" if self.base_url else "llamacpp")
            if self.constraint is not None:
                choice = replace(choice, constraint=cast("Constraint", self.constraint))
            return choice.checked()
        except ValueError as exc:
            raise pytest.UsageError(f"--deskpilot-model: {exc}") from None

    def opener(self) -> Any:
        from deskpilot.models.open import open_runtime

        choice = self.model_choice()
        return None if choice is None else (lambda: open_runtime(choice))

    def place(self) -> Any:
        from deskpilot.agent.rundir import default_runs_root
        from deskpilot.agent.tasks.cache import CacheMode
        from deskpilot.agent.tasks.live import Place

        runs = (self.runs_dir or default_runs_root()).resolve()
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        return Place(new_display=True, screen_size=self.size,
                     runs_root=runs / worker if worker else runs, cache=CacheMode(self.cache),
                     cache_dir=self.cache_dir)


def _keep(config: pytest.Config, result: TaskResult) -> None:
    config.stash[_results_key].append(result.to_record())


def _attach(item: pytest.Item, result: TaskResult) -> None:
    """Name the failed step's screenshot and the run folder in pytest's JUnit properties."""
    failed = result.failed_step
    if result.run_dir is None:
        return
    if failed is not None and failed.screenshot:
        path = result.run_dir / failed.screenshot
        item.user_properties.append(("screenshot", str(path)))
        item.add_report_section("call", "deskpilot", f"[[ATTACHMENT|{path}]]")
    item.user_properties.append(("deskpilot_run_dir", str(result.run_dir)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = config.getoption("shard")
    if shard is None:
        return
    from deskpilot.agent.tasks.shard import in_shard

    def file_of(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    kept = in_shard(items, shard, file_of)
    mine = {id(i) for i in kept}
    deselected = [i for i in items if id(i) not in mine]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = kept


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: a worker finished; take the results it handed over."""
    output = getattr(node, "workeroutput", {})
    if RESULTS_KEY in output:
        node.config.stash[_results_key].extend(json.loads(output[RESULTS_KEY]))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    results = config.stash.get(_results_key, [])
    if hasattr(config, "workerinput"):  # an xdist worker: the controller writes the report
        config.workeroutput[RESULTS_KEY] = json.dumps(results)  # type: ignore[attr-defined]
        return
    report = config.getoption("deskpilot_report")
    if report is None or not results:
        return
    import datetime as dt

    from deskpilot.agent.reports.outputs import Outputs, write_outputs
    from deskpilot.agent.tasks.results import SuiteResult, TaskResult

    tasks = tuple(sorted((TaskResult.from_record(r) for r in results),
                         key=lambda t: (str(t.file), t.name)))
    suite = SuiteResult(tasks, sum(t.seconds for t in tasks),
                        dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    written: list[Path] = []
    write_outputs(suite, Outputs(report=report), lambda label, path: written.append(path))
    config.stash[_report_key] = (written[0], len(tasks))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _report_key in config.stash:
        path, count = config.stash[_report_key]
        terminalreporter.write_sep("-", "deskpilot")
        terminalreporter.write_line(f"report of {count} desktop tasks: {path.resolve()}")
        terminalreporter.write_line(f"open it with: xdg-open {path.resolve()}")
