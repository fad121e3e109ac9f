"""What a task file holds once it is loaded: immutable specs, steps and tasks.

Every step kind's spec is a pydantic model or a bounded scalar; :mod:`.steps` pairs each kind
with its spec and handler, and :mod:`.file` reads YAML into these objects.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deskpilot.actions.types import MAX_SCROLL, MAX_TYPE_CHARS

VARIABLE_REF = re.compile(r"\$\{([^}]*)\}")  # ``${name}`` in a spec's strings
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Text = Annotated[str, Field(min_length=1, max_length=MAX_TYPE_CHARS)]
Seconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]
Coord = Annotated[int, Field(ge=0, le=100_000)]
PixelRegion = tuple[Coord, Coord, Coord, Coord]

# The specs of the step kinds that take one plain value: the key or chord of a ``key`` step
# (ctrl+s), the seconds of a ``wait`` step, and the words of a ``do`` or ``check`` step.
KeyChord = Annotated[str, Field(min_length=1, max_length=48)]
WaitSeconds = Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)]
Instruction = Text


class SpecModel(BaseModel):
    """The base of every spec: frozen, and unknown keys are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_region(region: PixelRegion | None) -> PixelRegion | None:
    if region is not None and (region[2] <= region[0] or region[3] <= region[1]):
        raise ValueError("region must be [x1, y1, x2, y2] with x1 < x2 and y1 < y2 (pixels)")
    return region


Role = Annotated[str, Field(min_length=1, max_length=64)]


# What a ``type`` step may hold besides printable text: a new line (enter) and a tab. Any other
# control character would press a key nobody wrote (escape, backspace) or nothing at all.
_TYPE_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
IntervalMs = Annotated[int, Field(ge=0, le=1000)]
DEFAULT_TYPING_INTERVAL_MS = 20  # measured on xcalc and xedit: see docs/tasks.md, "Typing"


def _typeable(text: str) -> str:
    bad = _TYPE_CONTROLS.search(text)
    if bad is not None:
        raise ValueError(f"control character U+{ord(bad.group()):04X} at position "
                         f"{bad.start()}; a type step types text (newline and tab allowed), "
                         "use a key step for other keys")
    return text


class TypeSpec(SpecModel):
    """Text to type, and the pause between characters (``interval_ms``, else the task's)."""

    text: Text
    interval_ms: IntervalMs | None = None

    _text = field_validator("text")(_typeable)


class TypingSpec(SpecModel):
    """How a task types: the pause between characters, for apps that drop fast keys."""

    interval_ms: IntervalMs = DEFAULT_TYPING_INTERVAL_MS


class ClickSpec(SpecModel):
    """Where to click: text on the screen, an accessible element by name (and role), a point,
    or a target described to the model."""

    text: Text | None = None
    name: Text | None = None
    role: Role | None = None
    at: tuple[Coord, Coord] | None = None
    target: Text | None = None
    region: PixelRegion | None = None
    button: Literal["left", "right", "middle"] = "left"
    clicks: Annotated[int, Field(ge=1, le=3)] = 1

    _region = field_validator("region")(_check_region)

    @model_validator(mode="after")
    def _one_way(self) -> ClickSpec:
        given = [k for k in ("text", "name", "at", "target") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of text, name, at or target"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.role is not None and self.name is None:
            raise ValueError("role narrows an accessible element's name; give name with it")
        if self.at is not None and self.region is not None:
            raise ValueError("region narrows a text or target search; it means nothing with at")
        return self


class ScrollSpec(SpecModel):
    """Scroll notches in a direction, over a point, text, or the screen's centre."""

    direction: Literal["up", "down", "left", "right"] = "down"
    amount: Annotated[int, Field(ge=1, le=MAX_SCROLL)] = 3
    at: tuple[Coord, Coord] | None = None
    text: Text | None = None
    region: PixelRegion | None = None

    _region = field_validator("region")(_check_region)


class TextSpec(SpecModel):
    """Text to find on the screen (``wait_for``, ``expect``, ``expect_not``)."""

    text: Text
    region: PixelRegion | None = None
    timeout_s: Seconds = 10.0

    _region = field_validator("region")(_check_region)


class ScreenshotSpec(SpecModel):
    """Save a named screenshot, and compare it with its stored baseline when asked."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    compare: bool = False
    region: PixelRegion | None = None
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.001  # fraction of pixels allowed to change
    pixel_threshold: Annotated[int, Field(ge=0, le=255)] = 32

    _region = field_validator("region")(_check_region)


class FileSpec(SpecModel):
    """A file the task should have produced, and optionally text it must contain."""

    path: Text
    contains: str | None = None


class QuerySpec(SpecModel):
    """Ask the model to read a value off the screen and keep it as a variable."""

    ask: Text
    save_as: Annotated[str, Field(pattern=VARIABLE_NAME.pattern)]


class WaitForWindow(SpecModel):
    """Wait until a window (by name) or text is on the screen."""

    window: Text | None = None
    text: Text | None = None
    timeout_s: Seconds = 10.0

    @model_validator(mode="after")
    def _one(self) -> WaitForWindow:
        if (self.window is None) == (self.text is None):
            raise ValueError("give exactly one of window or text")
        return self


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class LaunchSpec(SpecModel):
    """A program started before the steps and stopped after them; ``env`` adds environment
    variables for it (the place for secrets: arguments are public, the environment is not)."""

    command: Text
    wait_for: WaitForWindow | None = None
    env: dict[Annotated[str, Field(pattern=ENV_NAME.pattern)],
              Annotated[str, Field(max_length=MAX_TYPE_CHARS)]] = Field(default_factory=dict)

    @field_validator("command")
    @classmethod
    def _splits(cls, value: str) -> str:
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split the command: {exc}") from None
        if not argv:
            raise ValueError("the command is empty")
        return value


class SetupSpec(SpecModel):
    """Programs to launch, and what to wait for before the first step."""

    launch: tuple[LaunchSpec, ...] = ()
    wait_for: WaitForWindow | None = None

    @field_validator("launch", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        # ``launch: xcalc`` and ``launch: [xcalc, {command: ..., wait_for: ...}]`` both work.
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list):
            return [{"command": i} if isinstance(i, str) else i for i in items]
        return value


class ScopeSpec(SpecModel):
    """Where the task may act: a screen region (pixels) and/or windows by title or class."""

    region: PixelRegion | None = None
    windows: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = ()

    _region = field_validator("region")(_check_region)


class BudgetSpec(SpecModel):
    """Limits: agent steps for each ``do`` step, and wall time for the whole task."""

    max_steps: Annotated[int, Field(ge=1, le=500)] = 20
    timeout_s: Seconds = 300.0


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a task, as validated; ``spec`` has the type the step registry gives its kind
    (:data:`deskpilot.agent.tasks.steps.STEPS`)."""

    kind: str
    spec: Any
    line: int
    label: str  # the step as written (variables still as ``${name}``), for records
    position: int = 0  # index in the file's steps list, for error messages
    needs_model: bool = False  # the step cannot run without the vision model


@dataclass(frozen=True, slots=True)
class Variable:
    """A task variable; values from the environment are secret and never written anywhere."""

    value: str
    secret: bool


@dataclass(frozen=True, slots=True)
class Task:
    """One loaded task file."""

    name: str
    path: Path
    setup: SetupSpec
    budget: BudgetSpec
    scope: ScopeSpec
    variables: Mapping[str, Variable]
    allow: frozenset[str]
    steps: tuple[Step, ...]
    typing: TypingSpec = field(default_factory=TypingSpec)

    @property
    def needs_model(self) -> bool:
        """True when any step needs the vision model."""
        return any(s.needs_model for s in self.steps)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never reach a record (longest first, for replacement)."""
        return tuple(sorted((v.value for v in self.variables.values() if v.secret and v.value),
                            key=len, reverse=True))


def baseline_folder(name: str) -> str:
    """The folder of a task's baselines: its name made file-system safe, unique per name.

    A name with characters that do not survive that (accents, CJK, ``/``) gets a short hash of
    the whole name, so "Café" and "Cafè" do not share one folder of baselines.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.").lower()[:60] or "task"
    if re.fullmatch(r"[A-Za-z0-9_.-]+( [A-Za-z0-9_.-]+)*", name) and len(name) <= 60:
        return safe
    return f"{safe}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace ``${name}`` with its value (every name was checked when the file loaded)."""
    return VARIABLE_REF.sub(lambda m: values.get(m.group(1), m.group(0)), text)


