"""Typed records of a run: one per step, plus the run's outcome.

The same records feed the prompt history, the JSONL trajectory and the CLI's step lines (and
later the TUI and reports), so there is one source of truth for what happened.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from deskpilot.actions.text import shorten


class Status(StrEnum):
    """How a run ended."""

    DONE = "done"                      # the model declared the task complete
    FAILED = "failed"                  # the model declared the task impossible
    ASKED_USER = "asked_user"          # the model needs the person
    MAX_STEPS = "max_steps"            # step budget spent
    TIMEOUT = "timeout"                # wall-time budget spent
    TOO_MANY_ERRORS = "too_many_errors"  # consecutive unusable replies
    RUNTIME_ERROR = "runtime_error"    # the model runtime broke
    INPUT_ERROR = "input_error"        # capture or input device broke
    INTERRUPTED = "interrupted"        # the person stopped it
    LOOP_DETECTED = "loop_detected"    # the same actions again and again, the screen unchanged
    RECORD_ERROR = "record_error"      # the run directory could not be written: stop acting
    TAKEN_OVER = "taken_over"          # the person used the mouse or keyboard: hands off

    @property
    def ok(self) -> bool:
        """True only when the task was reported complete."""
        return self is Status.DONE


class Outcome(StrEnum):
    """What became of one step's reply."""

    EXECUTED = "executed"
    DRY_RUN = "dry_run"        # validated but not sent to the input device
    REJECTED = "rejected"      # unparseable or invalid; the error goes back to the model
    DENIED = "denied"          # the safety policy or the person refused it; nothing was sent
    TERMINAL = "terminal"      # done / fail / ask_user
    TAKEN_OVER = "taken_over"  # the person had control meanwhile; the action was dropped


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds spent in each phase of a step."""

    capture: float = 0.0
    preprocess: float = 0.0
    model: float = 0.0
    act: float = 0.0
    record: float = 0.0

    @property
    def total(self) -> float:
        """Sum of the phases."""
        return self.capture + self.preprocess + self.model + self.act + self.record

    def line(self) -> str:
        """Compact milliseconds for one-line step output."""
        return (f"capture {self.capture * 1e3:.0f}ms  prep {self.preprocess * 1e3:.0f}ms  "
                f"model {self.model * 1e3:.0f}ms  act {self.act * 1e3:.0f}ms  "
                f"record {self.record * 1e3:.0f}ms")


@dataclass(frozen=True, slots=True)
class StepRecord:
    """Everything about one observe-think-act step."""

    index: int
    outcome: Outcome
    summary: str
    answer: str
    reasoning: str = ""
    action: dict[str, Any] | None = None
    points: tuple[tuple[int, int], ...] = ()
    error: str | None = None
    screenshot: str | None = None
    image_size: tuple[int, int] = (0, 0)
    # The screenshot's image tokens in the step's prompt, plus those a grounding call (none
    # when it kept the planner's image) or the zoom call evaluated.
    image_tokens: int = 0
    output_tokens: int = 0
    timings: Timings = field(default_factory=Timings)
    model_timings: dict[str, float] = field(default_factory=dict)
    zoom_image_tokens: int = 0  # the part of image_tokens spent on a zoomed crop
    # The grounding calls that turned the planner's target descriptions into boxes, each as
    # :meth:`models.grounder.Located.to_json` writes it (empty for a joint call).
    grounding: tuple[dict[str, Any], ...] = ()

    def grounding_lines(self) -> list[str]:
        """One line per grounding call: the target, the model's answer, and the image reuse."""
        lines = []
        for call in self.grounding:
            box = call.get("box")
            got = ("[" + ", ".join(f"{v:.4f}" for v in box) + "]" if box is not None
                   else f"no box: {call.get('note', '')}")
            kept = call.get("reused_image_tokens", 0)
            reuse = f", image reused ({kept} tokens)" if kept else ""
            note = f" ({call['note']})" if box is not None and call.get("note") else ""
            lines.append(f"locate {shorten(str(call.get('target', '')), 60)!r} -> "
                         f"{shorten(str(call.get('answer', '')), 60)} = {got}{note}{reuse}")
        return lines

    def to_prompt_line(self) -> str:
        """How this step is recalled to the model on later steps."""
        if self.outcome is Outcome.REJECTED:
            return f"(unusable reply: {self.error})"
        if self.outcome is Outcome.DENIED:
            return f"(not allowed: {self.summary}: {self.error})"
        if self.outcome is Outcome.TAKEN_OVER:
            return f"({self.error}; {self.summary} was not carried out: look again)"
        return self.summary

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one trajectory line)."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["reply"] = {"answer": data.pop("answer"), "reasoning": data.pop("reasoning")}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRecord:
        """The record :meth:`to_json` wrote; a missing, unknown or malformed field raises
        KeyError, TypeError or ValueError."""
        fields = dict(data)
        reply = fields.pop("reply")
        width, height = fields.pop("image_size")
        return cls(**{
            **fields, "answer": reply["answer"], "reasoning": reply["reasoning"],
            "outcome": Outcome(fields["outcome"]), "image_size": (int(width), int(height)),
            "points": tuple((int(x), int(y)) for x, y in fields["points"]),
            "grounding": tuple(dict(g) for g in fields.get("grounding", ())),
            "timings": Timings(**fields["timings"])})

    def line(self) -> str:
        """One human-readable line for plain output."""
        where = " at " + " -> ".join(f"({x},{y})" for x, y in self.points) if self.points else ""
        what = (f"REJECTED: {self.error}" if self.outcome is Outcome.REJECTED
                else f"DENIED {self.summary}: {self.error}" if self.outcome is Outcome.DENIED
                else f"DROPPED {self.summary}: {self.error}"
                if self.outcome is Outcome.TAKEN_OVER else self.summary)
        return f"step {self.index:>3}  {what}{where}  [{self.outcome.value}]  {self.timings.line()}"


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended and what it produced."""

    status: Status
    message: str
    steps: tuple[StepRecord, ...]
    run_dir: Path | None = None

    def brief(self, limit: int) -> str:
        """The message cut to ``limit`` characters for a screen (the record keeps it whole)."""
        return shorten(self.message, limit)

    @property
    def answer(self) -> str:
        """The model's final answer (from a done action), or an empty string."""
        last = self.steps[-1] if self.steps else None
        if self.status is Status.DONE and last is not None and last.action is not None:
            return str(last.action.get("answer", ""))
        return ""
