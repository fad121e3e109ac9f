"""``deskpilot run FILE... --concurrency N``: up to N task files at once, one process each.

Each task runs in a child process (``python -P -m deskpilot``) on a private Xvfb display of its own,
not in a thread: pyautogui binds to the first X display its process sees, and the capture and
input code read the process-wide ``DISPLAY``, so two tasks in one process would act on one
screen. The parent only schedules, reports progress and writes the one JUnit file, summary and
report of the whole run, in the order the files were given.

A child gets the parent's own arguments unchanged, plus ``--lane K --result-json PATH``: it
keeps the K-th task file, forces a private display, drops the suite outputs, and writes its
results in full (:meth:`TaskResult.to_record`) for the parent to read back. Passing the
arguments unchanged, rather than rebuilding them, means every run option reaches the children,
including options added later. Each child's output goes to a log file beside the result files;
a child that dies without a result becomes an error that names its log.

Ctrl+C, SIGTERM or SIGHUP in the parent send SIGTERM to each running child, which unwinds like
an interrupted ``deskpilot run`` (keys and buttons released, programs and Xvfb stopped, its
result written); the parent then writes the reports of what ran and exits 130. Children run in
sessions of their own, so a Ctrl+C in the terminal reaches only the parent, and each child
stops itself if the parent disappears without telling it (``kill -9``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from deskpilot.actions.text import shorten
from deskpilot.agent.cli.console import print_suite, say
from deskpilot.agent.cli.errors import EXIT_INTERRUPTED, UserError
from deskpilot.agent.cli.options import RunOptions, model_opener
from deskpilot.agent.reports.lane import read_lane_result
from deskpilot.agent.tasks.results import SuiteResult, TaskResult, TaskStatus
from deskpilot.agent.tasks.spec import Task

log = logging.getLogger(__name__)

POLL_S = 0.05          # between checks for finished children
TERM_GRACE_S = 30.0    # for a child told to stop: release input, stop programs, write result
PARENT_CHECK_S = 1.0   # how often a child checks that its parent is still there
# A lane's hard deadline is its task's budget (timeout_s) plus this: time to start Python, the
# Xvfb and OCR, and to stop the programs afterwards. Past it the child is stopped (SIGTERM to
# its process group, SIGKILL KILL_GRACE_S later) and the task reported as an error.
LANE_MARGIN_S = 30.0
KILL_GRACE_S = 10.0


def lane_argv(argv: Sequence[str], index: int, result: Path) -> list[str]:
    """The arguments of the child running task file ``index``: the parent's own, plus two.

    They go before a ``--`` (after it they would be read as task files).
    """
    extra = ["--lane", str(index), "--result-json", str(result)]
    args = list(argv)
    cut = args.index("--") if "--" in args else len(args)
    return [*args[:cut], *extra, *args[cut:]]


def stop_when_orphaned() -> None:
    """SIGTERM this process when its parent is gone, so it unwinds as if told to stop."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        log.warning("the --concurrency parent (pid %d) is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="deskpilot-parent-watch", daemon=True).start()


@dataclass
class _Lane:
    """One running child."""

    index: int
    task: Task
    proc: subprocess.Popen[bytes]
    log: Path
    result: Path
    started: float
    deadline: float = float("inf")
    overdue_since: float | None = None  # when it was told to stop for running too long


def run_lanes(tasks: Sequence[Task], options: RunOptions) -> int:
    """Run the (loaded, valid) tasks up to ``--concurrency`` at once; write one report."""
    files = options.files
    _check_can_run(tasks, options)
    width = min(files.concurrency, len(tasks))
    logs = _lanes_dir(options)
    w, h = files.screen_size
    say(f"{len(tasks)} task file(s), up to {width} at a time, each on a private Xvfb display "
          f"({w}x{h}); cache {files.cache}; output of each task in {logs}", flush=True)
    started = dt.datetime.now().astimezone()
    t0 = time.monotonic()
    pending = deque(enumerate(tasks))
    running: list[_Lane] = []
    done: dict[int, tuple[TaskResult, str]] = {}
    interrupted = False
    try:
        while pending or running:
            while pending and len(running) < width:
                running.append(_start(*pending.popleft(), options.argv, logs))
            for lane in running:
                _enforce_deadline(lane)
            for lane in [lane for lane in running if _exited(lane.proc)]:
                done[lane.index] = _collect(lane)
                running.remove(lane)
                _print_result(done[lane.index], len(done), len(tasks), lane)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        interrupted = True
        say(f"\nstopping {len(running)} running task(s)...", file=sys.stderr, flush=True)
        for lane in _stop_all(running):
            done[lane.index] = _collect(lane)
            _print_result(done[lane.index], len(done), len(tasks), lane)
    ordered = [done[i] for i in sorted(done)]
    suite = SuiteResult(tuple(r for r, _ in ordered), time.monotonic() - t0,
                        started.isoformat(timespec="seconds"),
                        ", ".join(d for _, d in ordered if d), files.screen_size, interrupted)
    code = print_suite(suite, options.outputs)
    if interrupted:
        skipped = [t.name for i, t in enumerate(tasks) if i not in done]
        say("interrupted: " + (f"not run: {', '.join(skipped)}" if skipped else
                                 "every task had started"), file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _check_can_run(tasks: Sequence[Task], options: RunOptions) -> None:
    """Refuse (exit 2) what would fail in every child, before any starts."""
    model, concurrency = options.model, options.files.concurrency
    if any(t.needs_model for t in tasks):
        if model.replay is None and model.backend != "openai":
            raise UserError(
                f"these tasks have model steps, and --concurrency {concurrency} would "
                f"load {min(concurrency, len(tasks))} copies of the model, one per task: "
                "start one model server and share it with --backend openai --base-url URL "
                "(see docs/scaling.md), use --replay, or run them one at a time "
                "(--concurrency 1)")
        model_opener(options)  # the same check of the model a single run makes (exit 2)
    if shutil.which("Xvfb") is None:
        raise UserError("--concurrency runs each task on a private Xvfb display, and Xvfb is "
                        "not installed (Debian/Ubuntu: apt-get install xvfb)")


def _lanes_dir(options: RunOptions) -> Path:
    """A private directory for the children's logs and result files, beside the runs."""
    from deskpilot.agent.rundir import default_runs_root

    root = options.runs_dir or default_runs_root()
    path = root / f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}-concurrency"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.mkdir(mode=0o700)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc} (nothing was run)"
                        ) from None
    return path


def _start(index: int, task: Task, argv: Sequence[str], logs: Path) -> _Lane:
    from deskpilot.agent.tasks.run import slug

    stem = f"{index + 1:03d}-{slug(task.name)}"
    log_path, result = logs / f"{stem}.log", logs / f"{stem}.result.json"
    # The child starts its own Xvfb; nothing in it may reach the person's display.
    env = {k: v for k, v in os.environ.items() if k not in {"DISPLAY", "WAYLAND_DISPLAY"}}
    env["PYTHONUNBUFFERED"] = "1"  # the log is complete even if the child is killed
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "deskpilot", *lane_argv(argv, index, result)],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env,
            # Its own session: Ctrl+C in the terminal reaches the parent only, which stops the
            # children in order; and the child's Xvfb shares its process group (see _exited).
            start_new_session=True)
    finally:
        os.close(fd)
    say(f"  start  {task.name}  ({task.path})", flush=True)
    now = time.monotonic()
    return _Lane(index, task, proc, log_path, result, now,
                 now + task.budget.timeout_s + LANE_MARGIN_S)


def _enforce_deadline(lane: _Lane) -> None:
    """Stop a child that ran past its hard deadline: its whole process group, then harder."""
    now = time.monotonic()
    if now < lane.deadline or lane.proc.returncode is not None:
        return
    if lane.overdue_since is None:
        lane.overdue_since = now
        log.warning("task %r ran past its hard deadline; stopping it", lane.task.name)
        _signal_group(lane.proc, signal.SIGTERM)
    elif now - lane.overdue_since > KILL_GRACE_S:
        _signal_group(lane.proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    # The child leads its own session: its group holds its Xvfb too. Not yet reaped (see
    # _exited), so the group id cannot belong to anyone else.
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child has exited; if so, stop what it left behind, then reap it.

    A child killed outright leaves its Xvfb running. The Xvfb is in the child's process group,
    which is stopped while the exited child is not yet reaped: its id cannot be reused until
    then, so the signal cannot reach anyone else's processes.
    """
    if proc.returncode is not None:
        return True
    try:
        state = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped already: its process group id may be someone else's
        proc.wait()
        return True
    if state is None:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
    return True


def _stop_all(running: Sequence[_Lane]) -> list[_Lane]:
    """SIGTERM every child, wait for them (SIGKILL after the grace time or a second signal)."""
    for lane in running:
        _signal(lane.proc, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    left = list(running)
    while left:
        try:
            time.sleep(POLL_S)
            left = [lane for lane in left if not _exited(lane.proc)]
            if left and time.monotonic() > deadline:
                raise TimeoutError
        except (KeyboardInterrupt, TimeoutError):
            # Asked twice, or a child does not stop: its result is lost, its process is not.
            for lane in left:
                _signal(lane.proc, signal.SIGKILL)
            deadline = float("inf")
    return list(running)


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    # Not Popen.send_signal: it would reap an exited child before _exited stops its leftovers.
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)


def _collect(lane: _Lane) -> tuple[TaskResult, str]:
    """The child's result and display, or an error result that says where its output is."""
    result, display = _collected(lane)
    if lane.overdue_since is None:
        return result, display
    limit = lane.task.budget.timeout_s
    message = (f"stopped after {time.monotonic() - lane.started:.0f}s, past the lane's hard "
               f"deadline (budget timeout_s {limit:g}s + {LANE_MARGIN_S:g}s); "
               f"its output is in {lane.log}")
    return replace(result, status=TaskStatus.ERROR, message=message), display


def _collected(lane: _Lane) -> tuple[TaskResult, str]:
    code = lane.proc.returncode
    how = (f"was killed by {_signal_name(-code)}" if code is not None and code < 0
           else f"exited with status {code}")
    try:
        got = read_lane_result(lane.result)
        if len(got.tasks) == 1:
            return got.tasks[0], got.display
        problem = f"wrote {len(got.tasks)} results, expected 1"
    except FileNotFoundError:
        problem = "wrote no result"
    except (OSError, ValueError) as exc:
        problem = f"wrote an unreadable result ({exc})"
    last = _last_line(lane.log)
    message = (f"the task's process {how} and {problem}"
               + (f"; its last words: {last}" if last else "")
               + f"; its output is in {lane.log}")
    error = TaskResult(lane.task.name, lane.task.path, TaskStatus.ERROR, message, (),
                       time.monotonic() - lane.started, None)
    return error, ""


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _last_line(path: Path, limit: int = 300) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return shorten(next((line.strip() for line in reversed(lines) if line.strip()), ""), limit)


def _print_result(item: tuple[TaskResult, str], count: int, total: int, lane: _Lane) -> None:
    result, display = item
    where = f" on {display}" if display else ""
    line = f"[{count}/{total}] {result.status.word} {result.name} in {result.seconds:.1f}s" \
           f"{where}"
    if result.status is not TaskStatus.PASSED:
        line += f": {result.message}"
        if str(lane.log) not in result.message:
            line += f"\n        output: {lane.log}"
    say(line, flush=True)
