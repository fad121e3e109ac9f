"""Open the supervision app for a run, with native output kept off its screen."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deskpilot.agent.records import RunResult
from deskpilot.agent.supervise import Controls
from deskpilot.tui.app import Job, RunInfo, SupervisorApp

log = logging.getLogger(__name__)


@contextmanager
def native_output_to(path: Path) -> Iterator[None]:
    """Send everything written to file descriptors 1 and 2 to ``path`` for the duration.

    llama.cpp, ggml backends and mtmd print from C straight to those descriptors, which would
    smear the interface. Python's ``sys.stdout``/``sys.stderr`` (and the ``__`` originals the
    interface draws on) are pointed at duplicates of the terminal first, so only native output
    and anything still holding the old streams (the logging handler) goes to the file.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    old = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    terminals = {fd: os.fdopen(saved[fd], "w", buffering=1, encoding="utf-8", closefd=False)
                 for fd in (1, 2)}
    try:
        for fd in (1, 2):
            os.dup2(target, fd)
        # The interface draws on sys.__stderr__: it must stay the terminal.
        sys.stdout, sys.stderr = terminals[1], terminals[2]
        setattr(sys, "__stdout__", terminals[1])  # noqa: B010 - typeshed marks it final
        setattr(sys, "__stderr__", terminals[2])  # noqa: B010
        yield
    finally:
        for stream in terminals.values():
            stream.flush()
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
        sys.stdout, sys.stderr = old[0], old[1]
        setattr(sys, "__stdout__", old[2])  # noqa: B010
        setattr(sys, "__stderr__", old[3])  # noqa: B010
        for fd in (1, 2):
            terminals[fd].close()
            os.close(saved[fd])
        os.close(target)


def supervise(info: RunInfo, job: Job, *, controls: Controls, native_log: Path
              ) -> tuple[RunResult | None, str | None]:
    """Run ``job`` under the app until the person quits: its result, or why there is none."""
    app = SupervisorApp(info, job, controls=controls)
    with native_output_to(native_log):
        app.run()
    if app.result is not None:
        return app.result, None
    return None, app.error or "the interface was closed before the run ended"
