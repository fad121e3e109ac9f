"""The JSON summary of a suite run, and the private atomic write all three run outputs share.

CI reads these files while other jobs may still be writing theirs, so each one appears whole or
not at all (a temporary file in the same directory, then ``os.replace``), readable only by the
user (0600), like the run directories.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deskpilot.agent.tasks.results import SuiteResult, TaskResult
from deskpilot.grounding.visual import write_atomic


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, with mode 0600 (a new parent directory is 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp makes the temporary file 0600, so no other user can read it, before or after.
    write_atomic(path, data)


def report_link(page: Path, n: int, task: TaskResult) -> str:
    """A ``file://`` URL into the report at ``page``: the failed step of the ``n``-th task
    (1-based), or the task itself when no step failed."""
    step = task.failed_step
    fragment = f"task-{n}" + (f"-step-{step.index}" if step is not None else "")
    return f"{page.absolute().as_uri()}#{fragment}"


def summary_json(suite: SuiteResult, report: Path | None = None) -> dict[str, Any]:
    """The summary as a JSON-ready dict; with the ``report`` page, where it is and, per task,
    the link into it."""
    tasks = [t.to_json() for t in suite.tasks]
    if report is not None:
        for n, (data, task) in enumerate(zip(tasks, suite.tasks, strict=True), 1):
            data["report_url"] = report_link(report, n, task)
    return {"passed": suite.passed, "counts": suite.counts(), "total": len(suite.tasks),
            "seconds": round(suite.seconds, 3), "started": suite.started,
            "display": suite.display, "screen_size": list(suite.screen_size),
            "report": None if report is None else str(report.absolute()),
            "tasks": tasks}


def write_summary(path: Path, suite: SuiteResult, *, report: Path | None = None) -> None:
    """Write the suite's JSON summary to ``path`` (atomically, 0600)."""
    text = json.dumps(summary_json(suite, report), indent=2, ensure_ascii=False) + "\n"
    write_private(path, text.encode())
