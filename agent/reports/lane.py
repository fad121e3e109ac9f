"""The result file a child of a ``--concurrency`` run writes for its parent, and reads back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from deskpilot.agent.reports.summary import write_private
from deskpilot.agent.tasks.results import SuiteResult, TaskResult

RESULT_VERSION = 1


@dataclass(frozen=True, slots=True)
class LaneResult:
    """What one child wrote: its results and the display it ran on."""

    tasks: tuple[TaskResult, ...]
    display: str
    screen_size: tuple[int, int]
    interrupted: bool


def write_lane_result(path: Path, suite: SuiteResult) -> None:
    """Write every result of ``suite`` in full, for the parent (atomically, 0600)."""
    data = {"version": RESULT_VERSION, "display": suite.display,
            "screen_size": list(suite.screen_size), "interrupted": suite.interrupted,
            "tasks": [t.to_record() for t in suite.tasks]}
    write_private(path, (json.dumps(data, ensure_ascii=False) + "\n").encode())


def read_lane_result(path: Path) -> LaneResult:
    """Read what :func:`write_lane_result` wrote; OSError or ValueError when it cannot."""
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        if data["version"] != RESULT_VERSION:
            raise ValueError(f"result format {data['version']!r}, expected {RESULT_VERSION}")
        width, height = data["screen_size"]
        return LaneResult(tuple(TaskResult.from_record(t) for t in data["tasks"]),
                          str(data["display"]), (int(width), int(height)),
                          bool(data["interrupted"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed result file: {type(exc).__name__}: {exc}") from None
