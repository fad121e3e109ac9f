"""Typed records of task-file runs: one per scripted step, one per task, one per suite.

They are the single source for the console lines, ``steps.jsonl``, the JUnit file, the JSON
summary and the HTML report. Boxes and points are in screenshot pixels (the PNG the step saved),
so a report can draw them straight onto the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from deskpilot.agent.records import StepRecord
from deskpilot.grounding.geometry import PixelBox


class Source(StrEnum):
    """Where a step's target came from."""

    OCR = "ocr"          # text found on the screen by rapidocr
    A11Y = "a11y"        # an element of the accessibility tree, by its name (and role)
    MODEL = "model"      # the vision model located it (direct mode)
    CACHE = "cache"      # a stored crop, verified on the current screen by template matching
    COORDS = "coords"    # the task file gave the point itself


class TaskStatus(StrEnum):
    """How a task ended."""

    PASSED = "passed"
    FAILED = "failed"    # a step did not hold (expectation, grounding, model verdict)
    ERROR = "error"      # setup broke, the display died, the runtime failed

    @property
    def word(self) -> str:
        """How the console shows it: PASSED, FAILED, ERROR."""
        return self.value.upper()


@dataclass(frozen=True, slots=True)
class Candidate:
    """Another place a step considered: the text read there (or an accessible element's name),
    its box on the screenshot, and where it came from (``ocr``, ``a11y push button``)."""

    text: str
    box: PixelBox | None = None
    via: str = ""

    def __str__(self) -> str:
        where = "" if self.box is None else f" at {list(self.box)}"
        return f"{self.text!r}{where}" + (f" ({self.via})" if self.via else "")

    @classmethod
    def from_json(cls, data: Any) -> Candidate:
        """A candidate as :meth:`ScriptStep.to_json` wrote it (a bare string: text only)."""
        if isinstance(data, str):
            return cls(data)
        box = data["box"]
        return cls(str(data["text"]), None if box is None else _ints(box, 4),
                   str(data.get("via", "")))


@dataclass(frozen=True, slots=True)
class ScriptStep:
    """What one task-file step did."""

    index: int                      # 1-based position in the task's steps
    kind: str                       # click, type, key, expect, do, check, ...
    label: str                      # the step as written, secrets replaced by placeholders
    file_line: int                  # where the step starts in the task file
    passed: bool
    message: str                    # what happened, or why it failed
    source: Source | None = None    # grounding source of a pointer step
    box: PixelBox | None = None     # the target's box on the screenshot
    point: tuple[int, int] | None = None  # where the pointer acted, on the screenshot
    screenshot: str | None = None   # PNG path relative to the task's run directory
    diff: str | None = None         # visual-regression difference image, same base
    baseline: str | None = None     # the baseline a failed comparison was made against, same base
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    model_text: str = ""            # reasoning and answer of any model call, as produced
    candidates: tuple[Candidate, ...] = ()  # places considered (ambiguous or closest text)
    agent_steps: tuple[StepRecord, ...] = ()  # the loop's own steps for ``do:``

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one ``steps.jsonl`` line)."""
        data = asdict(self)
        data["source"] = self.source.value if self.source is not None else None
        data["agent_steps"] = [s.to_json() for s in self.agent_steps]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScriptStep:
        """The step :meth:`to_json` wrote; a missing, unknown or malformed field raises
        KeyError, TypeError or ValueError."""
        fields = dict(data)
        box, point = fields.pop("box"), fields.pop("point")
        return cls(**{
            **fields, "source": None if fields["source"] is None else Source(fields["source"]),
            "box": None if box is None else _ints(box, 4),
            "point": None if point is None else _ints(point, 2),
            "candidates": tuple(Candidate.from_json(c) for c in fields["candidates"]),
            "agent_steps": tuple(StepRecord.from_json(s) for s in fields["agent_steps"])})

    def line(self) -> str:
        """One human-readable console line."""
        mark = "ok  " if self.passed else "FAIL"
        via = f" via {self.source.value}" if self.source is not None else ""
        return f"  {mark} {self.index:>2}. {self.label}{via} — {self.message} " \
               f"({self.seconds * 1e3:.0f} ms)"


@dataclass(frozen=True, slots=True)
class TaskResult:
    """The outcome of one task file."""

    name: str
    file: Path
    status: TaskStatus
    message: str
    steps: tuple[ScriptStep, ...]
    seconds: float
    run_dir: Path | None = None

    @property
    def failed_step(self) -> ScriptStep | None:
        """The step that ended the task, when one did."""
        return next((s for s in self.steps if not s.passed), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for the summary file."""
        failed = self.failed_step
        return {"name": self.name, "file": str(self.file), "status": self.status.value,
                "message": self.message, "seconds": round(self.seconds, 3),
                "steps": len(self.steps), "run_dir": str(self.run_dir) if self.run_dir else None,
                "failed_step": None if failed is None else {
                    "index": failed.index, "label": failed.label, "line": failed.file_line,
                    "message": failed.message, "screenshot": failed.screenshot}}

    def to_record(self) -> dict[str, Any]:
        """Everything, every step in full: :meth:`from_record` rebuilds an equal result.

        :meth:`to_json` is the summary's shorter form (a step count, the failed step).
        """
        return {"name": self.name, "file": str(self.file), "status": self.status.value,
                "message": self.message, "seconds": self.seconds,
                "run_dir": None if self.run_dir is None else str(self.run_dir),
                "steps": [s.to_json() for s in self.steps]}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> TaskResult:
        """The result :meth:`to_record` wrote; a missing or malformed field raises KeyError,
        TypeError or ValueError."""
        return cls(name=str(data["name"]), file=Path(data["file"]),
                   status=TaskStatus(data["status"]), message=str(data["message"]),
                   steps=tuple(ScriptStep.from_json(s) for s in data["steps"]),
                   seconds=float(data["seconds"]),
                   run_dir=None if data["run_dir"] is None else Path(data["run_dir"]))


def _ints(values: Any, count: int) -> Any:
    """A JSON list of ``count`` numbers as a tuple of ints (boxes and points)."""
    if not isinstance(values, list | tuple) or len(values) != count:
        raise ValueError(f"expected {count} numbers, got {values!r}")
    return tuple(int(v) for v in values)


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """Every task of one ``deskpilot run FILE...`` invocation."""

    tasks: tuple[TaskResult, ...]
    seconds: float
    started: str  # ISO 8601 local time
    display: str = ""
    screen_size: tuple[int, int] = (0, 0)
    interrupted: bool = False  # a signal or Ctrl+C stopped the run; later tasks did not run

    @property
    def passed(self) -> bool:
        """True when every task passed."""
        return all(t.status is TaskStatus.PASSED for t in self.tasks)

    def counts(self) -> dict[str, int]:
        """How many tasks ended in each status."""
        return {s.value: sum(t.status is s for t in self.tasks) for s in TaskStatus}
