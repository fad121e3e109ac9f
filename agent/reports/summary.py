"""The JSON summary of a suite run, and the private atomic write all three run outputs share.

CI reads these files while other jobs may still be writing theirs, so each one appears whole or
not at all (a temporary file in the same directory, then ``os.replace``), readable only by the
user (0600), like the run directories.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deskpilot.agent.tasks.results import SuiteResult
from deskpilot.grounding.visual import write_atomic


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, with mode 0600 (a new parent directory is 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp makes the temporary file 0600, so no other user can read it, before or after.
    write_atomic(path, data)


def summary_json(suite: SuiteResult) -> dict[str, Any]:
    """The summary as a JSON-ready dict."""
    return {"passed": suite.passed, "counts": suite.counts(), "total": len(suite.tasks),
            "seconds": round(suite.seconds, 3), "started": suite.started,
            "display": suite.display, "screen_size": list(suite.screen_size),
            "tasks": [t.to_json() for t in suite.tasks]}


def write_summary(path: Path, suite: SuiteResult) -> None:
    """Write the suite's JSON summary to ``path`` (atomically, 0600)."""
    text = json.dumps(summary_json(suite), indent=2, ensure_ascii=False) + "\n"
    write_private(path, text.encode())
