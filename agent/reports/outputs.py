"""The files a task run writes when it ends: JUnit, the JSON summary, the HTML report, and the
result file a ``--concurrency`` child hands its parent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deskpilot.agent.tasks.results import SuiteResult


@dataclass(frozen=True, slots=True)
class Outputs:
    """Where each file goes; ``None`` when it was not asked for."""

    junit: Path | None = None
    summary: Path | None = None
    report: Path | None = None
    lane_result: Path | None = None  # only in a child of a --concurrency run

    @property
    def report_page(self) -> Path | None:
        """The report's page, absolute (``index.html`` in the report directory)."""
        return None if self.report is None else (self.report / "index.html").absolute()


def write_outputs(suite: SuiteResult, outputs: Outputs,
                  on_written: Callable[[str, Path], object] = lambda label, path: None) -> None:
    """Write every file asked for, telling ``on_written`` about each as soon as it is there."""
    from deskpilot.agent.reports.html import write_report
    from deskpilot.agent.reports.junit import write_junit
    from deskpilot.agent.reports.lane import write_lane_result
    from deskpilot.agent.reports.summary import write_summary

    if outputs.junit is not None:
        write_junit(outputs.junit, suite)
        on_written("junit", outputs.junit)
    if outputs.summary is not None:
        write_summary(outputs.summary, suite, report=outputs.report_page)
        on_written("summary", outputs.summary)
    if outputs.report is not None:
        on_written("report", write_report(outputs.report, suite))
    if outputs.lane_result is not None:
        write_lane_result(outputs.lane_result, suite)
