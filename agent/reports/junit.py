"""The JUnit XML file of a suite run: one test case per task file, for CI test views.

The failing step's images (its screenshot, and for a failed comparison the baseline and the
difference) are named three times: as absolute paths in the failure's text, as
``[[ATTACHMENT|path]]`` lines in ``system-out``, which Jenkins and GitLab turn into links, and
as properties of the test case (``screenshot``, ``baseline``, ``difference``) for tools that
read those.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from deskpilot.agent.reports.summary import write_private
from deskpilot.agent.tasks.results import ScriptStep, SuiteResult, TaskResult, TaskStatus

# XML 1.0 cannot hold most control characters, not even escaped; screen text and model output
# may contain them, and one would make the whole file unreadable to the CI server.
_ILLEGAL_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 does not allow."""
    return _ILLEGAL_XML.sub("", text)


def _absolute(task: TaskResult, rel: str | None) -> Path | None:
    if rel is None or task.run_dir is None:
        return None
    return (task.run_dir / rel).absolute()


def failure_message(task: TaskResult) -> str:
    """One line naming the step that ended the task, or the task's own message."""
    step = task.failed_step
    if step is None:
        return task.message
    return f"step {step.index} (line {step.file_line}): {step.label}: {step.message}"


def _failure_details(task: TaskResult, step: ScriptStep | None) -> str:
    lines = [failure_message(task), f"task file: {task.file}"]
    if task.message and step is not None:
        lines.append(f"task: {task.message}")
    if step is not None:
        if step.source is not None:
            lines.append(f"grounding source: {step.source.value}")
        if step.box is not None:
            lines.append(f"box: {step.box}")
        if step.point is not None:
            lines.append(f"point: {step.point}")
        if step.candidates:
            lines.append("candidates: " + ", ".join(str(c) for c in step.candidates))
        for name, path in _images(task, step):
            lines.append(f"{name}: {path}")
        if step.model_text:
            lines += ["model text:", step.model_text]
    if task.run_dir is not None:
        lines.append(f"run directory: {task.run_dir.absolute()}")
    return "\n".join(lines)


def _images(task: TaskResult, step: ScriptStep | None) -> list[tuple[str, Path]]:
    """The failing step's images that exist as files, each with what it is."""
    if step is None:
        return []
    named = (("screenshot", step.screenshot), ("baseline", step.baseline),
             ("difference", step.diff))
    return [(name, path) for name, rel in named if (path := _absolute(task, rel)) is not None]


def _system_out(task: TaskResult) -> str:
    lines = [step.line() for step in task.steps]
    lines += [f"[[ATTACHMENT|{path}]]" for _, path in _images(task, task.failed_step)]
    return "\n".join(lines)


def _testcase(parent: ET.Element, task: TaskResult) -> None:
    case = ET.SubElement(parent, "testcase", {
        "classname": xml_text(f"deskpilot.{task.file.stem}"), "name": xml_text(task.name),
        "time": f"{task.seconds:.3f}", "file": xml_text(str(task.file))})
    if images := _images(task, task.failed_step):
        properties = ET.SubElement(case, "properties")
        for name, path in images:
            ET.SubElement(properties, "property", {"name": name, "value": xml_text(str(path))})
    if task.status is not TaskStatus.PASSED:
        tag, kind = (("failure", "StepFailed") if task.status is TaskStatus.FAILED
                     else ("error", "TaskError"))
        problem = ET.SubElement(case, tag, {"message": xml_text(failure_message(task)),
                                            "type": kind})
        problem.text = xml_text(_failure_details(task, task.failed_step))
    ET.SubElement(case, "system-out").text = xml_text(_system_out(task))


def junit_xml(suite: SuiteResult) -> bytes:
    """The JUnit XML document of ``suite``, UTF-8 with an XML declaration."""
    counts = suite.counts()
    totals = {"tests": str(len(suite.tasks)), "failures": str(counts[TaskStatus.FAILED.value]),
              "errors": str(counts[TaskStatus.ERROR.value]), "time": f"{suite.seconds:.3f}"}
    root = ET.Element("testsuites", {"name": "deskpilot", **totals})
    testsuite = ET.SubElement(root, "testsuite", {
        "name": "deskpilot", **totals, "skipped": "0", "timestamp": xml_text(suite.started)})
    properties = ET.SubElement(testsuite, "properties")
    width, height = suite.screen_size
    for name, value in (("display", suite.display), ("screen_size", f"{width}x{height}")):
        ET.SubElement(properties, "property", {"name": name, "value": xml_text(value)})
    for task in suite.tasks:
        _testcase(testsuite, task)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: Path, suite: SuiteResult) -> None:
    """Write the suite's JUnit XML to ``path`` (atomically, 0600)."""
    write_private(path, junit_xml(suite))
