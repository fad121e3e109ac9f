"""YAML task files: loaded once into immutable objects, every error naming file, line and key.

A task file is data, never code: commands in ``setup.launch`` are split like a shell would but
run without one, and ``${name}`` references are plain text substitution from ``variables``.
The format is documented in ``docs/tasks.md``.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deskpilot.actions.keys import ChordError, UnknownKeyError, parse_chord
from deskpilot.actions.text import shorten
from deskpilot.actions.types import MAX_SCROLL, MAX_TYPE_CHARS

# Names the ``allow`` list may use: the sensitive action classes a task may take unattended.
ALLOW_NAMES = ("sensitive_keys", "sensitive_clicks", "terminal_typing", "secret_typing")
BUILTIN_VARIABLES = ("work_dir", "task_dir")
STEP_KINDS = ("click", "type", "key", "scroll", "wait", "wait_for", "expect", "expect_not",
              "screenshot", "expect_file", "do", "check", "query")
MODEL_STEP_KINDS = frozenset({"do", "check", "query"})  # plus click with a ``target``
MAX_TASK_FILE_BYTES = 1_000_000

_REF = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

Text = Annotated[str, Field(min_length=1, max_length=MAX_TYPE_CHARS)]
Seconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]
Coord = Annotated[int, Field(ge=0, le=100_000)]
PixelRegion = tuple[Coord, Coord, Coord, Coord]


class TaskFileError(ValueError):
    """A task file cannot be used; ``problems`` holds one ``file:line: key: message`` each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_region(region: PixelRegion | None) -> PixelRegion | None:
    if region is not None and (region[2] <= region[0] or region[3] <= region[1]):
        raise ValueError("region must be [x1, y1, x2, y2] with x1 < x2 and y1 < y2 (pixels)")
    return region


class ClickSpec(_Spec):
    """Where to click: text on the screen, a point, or a target described to the model."""

    text: Text | None = None
    at: tuple[Coord, Coord] | None = None
    target: Text | None = None
    region: PixelRegion | None = None
    button: Literal["left", "right", "middle"] = "left"
    clicks: Annotated[int, Field(ge=1, le=3)] = 1

    _region = field_validator("region")(_check_region)

    @model_validator(mode="after")
    def _one_way(self) -> ClickSpec:
        given = [k for k in ("text", "at", "target") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of text, at or target"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.at is not None and self.region is not None:
            raise ValueError("region narrows a text or target search; it means nothing with at")
        return self


class ScrollSpec(_Spec):
    """Scroll notches in a direction, over a point, text, or the screen's centre."""

    direction: Literal["up", "down", "left", "right"] = "down"
    amount: Annotated[int, Field(ge=1, le=MAX_SCROLL)] = 3
    at: tuple[Coord, Coord] | None = None
    text: Text | None = None
    region: PixelRegion | None = None

    _region = field_validator("region")(_check_region)


class TextSpec(_Spec):
    """Text to find on the screen (``wait_for``, ``expect``, ``expect_not``)."""

    text: Text
    region: PixelRegion | None = None
    timeout_s: Seconds = 10.0

    _region = field_validator("region")(_check_region)


class ScreenshotSpec(_Spec):
    """Save a named screenshot, and compare it with its stored baseline when asked."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    compare: bool = False
    region: PixelRegion | None = None
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.001  # fraction of pixels allowed to change
    pixel_threshold: Annotated[int, Field(ge=0, le=255)] = 32

    _region = field_validator("region")(_check_region)


class FileSpec(_Spec):
    """A file the task should have produced, and optionally text it must contain."""

    path: Text
    contains: str | None = None


class QuerySpec(_Spec):
    """Ask the model to read a value off the screen and keep it as a variable."""

    ask: Text
    save_as: Annotated[str, Field(pattern=_NAME.pattern)]


class WaitForWindow(_Spec):
    """Wait until a window (by name) or text is on the screen."""

    window: Text | None = None
    text: Text | None = None
    timeout_s: Seconds = 10.0

    @model_validator(mode="after")
    def _one(self) -> WaitForWindow:
        if (self.window is None) == (self.text is None):
            raise ValueError("give exactly one of window or text")
        return self


class LaunchSpec(_Spec):
    """A program started before the steps and stopped after them."""

    command: Text
    wait_for: WaitForWindow | None = None

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


class SetupSpec(_Spec):
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


class ScopeSpec(_Spec):
    """Where the task may act: a screen region (pixels) and/or windows by title or class."""

    region: PixelRegion | None = None
    windows: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = ()

    _region = field_validator("region")(_check_region)


class BudgetSpec(_Spec):
    """Limits: agent steps for each ``do`` step, and wall time for the whole task."""

    max_steps: Annotated[int, Field(ge=1, le=500)] = 20
    timeout_s: Seconds = 300.0


_SPEC_OF: dict[str, Any] = {
    "click": ClickSpec, "scroll": ScrollSpec, "wait_for": TextSpec, "expect": TextSpec,
    "expect_not": TextSpec, "screenshot": ScreenshotSpec, "expect_file": FileSpec,
    "query": QuerySpec,
    "type": Text, "key": Annotated[str, Field(min_length=1, max_length=48)],
    "wait": Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)],
    "do": Text, "check": Text,
}


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a task, as validated; ``spec`` is a model or a plain value by kind."""

    kind: str
    spec: Any
    line: int
    label: str  # the step as written (variables still as ``${name}``), for records
    position: int = 0  # index in the file's steps list, for error messages

    @property
    def needs_model(self) -> bool:
        """True when the step cannot run without the vision model."""
        return self.kind in MODEL_STEP_KINDS or (
            self.kind == "click" and self.spec.target is not None)


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

    @property
    def needs_model(self) -> bool:
        """True when any step needs the vision model."""
        return any(s.needs_model for s in self.steps)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never reach a record (longest first, for replacement)."""
        return tuple(sorted((v.value for v in self.variables.values() if v.secret and v.value),
                            key=len, reverse=True))


class _Header(_Spec):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    setup: SetupSpec = SetupSpec()
    budget: BudgetSpec = BudgetSpec()
    scope: ScopeSpec = ScopeSpec()
    variables: dict[str, Any] = Field(default_factory=dict)
    allow: tuple[str, ...] = ()
    steps: list[Any] = Field(min_length=1)

    @field_validator("allow")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in ALLOW_NAMES:
                raise ValueError(f"unknown name {name!r}; known: {', '.join(ALLOW_NAMES)}")
        return value


def load_tasks(paths: Iterable[Path], *, environ: Mapping[str, str] | None = None) -> list[Task]:
    """Load every file, reporting the problems of all of them at once."""
    tasks: list[Task] = []
    problems: list[str] = []
    for path in paths:
        try:
            tasks.append(load_task(path, environ=environ))
        except TaskFileError as exc:
            problems.extend(exc.problems)
    if problems:
        raise TaskFileError(problems)
    return tasks


def load_task(path: Path, *, environ: Mapping[str, str] | None = None) -> Task:
    """Read and validate one task file."""
    environ = os.environ if environ is None else environ
    root = _compose(path)
    where = _Locator(path, root)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:  # composed fine, but e.g. a !!python tag cannot be built
        raise TaskFileError([_yaml_problem(path, exc)]) from None
    if not isinstance(data, dict):
        raise TaskFileError([where.at((), "a task file is a mapping with name and steps")])
    problems: list[str] = []
    try:
        header = _Header.model_validate(data)
    except ValidationError as exc:
        problems += [where.at(tuple(e["loc"]), _reason(e)) for e in exc.errors()
                     if e["loc"][:1] not in {("variables",), ("steps",)} or len(e["loc"]) == 1]
    # Variables and steps are checked even when the header is wrong: one run shows every problem.
    raw_vars, raw_steps = data.get("variables"), data.get("steps")
    variables = _variables(raw_vars if isinstance(raw_vars, dict) else {}, environ, where,
                           problems)
    steps = _steps(raw_steps if isinstance(raw_steps, list) else [], where, problems)
    # A variable with a bad value is still declared: its uses are not reported again.
    _check_references(steps, {str(k) for k in (raw_vars or {})} | set(variables), where,
                      problems)
    if problems:
        raise TaskFileError(sorted(problems, key=_line_number))
    return Task(name=header.name, path=path, setup=header.setup, budget=header.budget,
                scope=header.scope, variables=variables, allow=frozenset(header.allow),
                steps=tuple(steps))


def _compose(path: Path) -> yaml.Node:
    try:
        if path.stat().st_size > MAX_TASK_FILE_BYTES:
            raise TaskFileError([f"{path}:1: file: larger than {MAX_TASK_FILE_BYTES} bytes"])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskFileError([f"{path}: file: no such task file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError([f"{path}: file: cannot read it ({exc})"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise TaskFileError([_yaml_problem(path, exc)]) from None
    if node is None:
        raise TaskFileError([f"{path}:1: file: the task file is empty"])
    return node


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{path}:{line}: yaml: {problem}"


class _Locator:
    """Finds the line of a key path (``("steps", 2, "click", "text")``) in the YAML tree."""

    def __init__(self, path: Path, root: yaml.Node) -> None:
        self.path, self.root = path, root

    def line(self, loc: Sequence[str | int]) -> int:
        node = self.root
        for part in loc:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == str(part):
                        child = value if part != loc[-1] else key
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                    and 0 <= part < len(node.value):
                child = node.value[part]
            if child is None:
                break
            node = child
        return node.start_mark.line + 1

    def at(self, loc: Sequence[str | int], message: str) -> str:
        key = _key_name(loc)
        return f"{self.path}:{self.line(loc)}: {key}: {message}"


def _line_number(problem: str) -> int:
    match = re.match(r"^.*?:(\d+): ", problem)
    return int(match.group(1)) if match else 0


def _key_name(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "file"


def _reason(error: Mapping[str, Any], *, spec_of: str | None = None) -> str:
    kind, msg = error.get("type", ""), str(error.get("msg", ""))
    if kind == "extra_forbidden":
        fields = getattr(_SPEC_OF.get(spec_of or ""), "model_fields", None) or {}
        close = difflib.get_close_matches(str(error["loc"][-1]), list(fields), n=1)
        return "unknown key" + (f" (did you mean {close[0]}?)" if close else
                                f" (known: {', '.join(fields)})" if fields else "")
    if kind == "missing":
        return "required key is missing"
    return msg.removeprefix("Value error, ")


def _variables(raw: Mapping[str, Any], environ: Mapping[str, str], where: _Locator,
               problems: list[str]) -> dict[str, Variable]:
    variables: dict[str, Variable] = {}
    for name, value in raw.items():
        loc = ("variables", name)
        if not _NAME.match(str(name)) or name in BUILTIN_VARIABLES:
            problems.append(where.at(loc, "a variable name is letters, digits and _, and not "
                                          f"one of the built-ins ({', '.join(BUILTIN_VARIABLES)})"))
            continue
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append(where.at(loc, "a variable is a string or a number"))
            continue
        text = str(value)
        env = re.fullmatch(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", text)
        if env:
            if env.group(1) not in environ:
                problems.append(where.at(loc, f"environment variable {env.group(1)} is not set"))
                continue
            variables[name] = Variable(environ[env.group(1)], secret=True)
        elif "${env:" in text:
            problems.append(where.at(loc, "${env:NAME} must be the whole value"))
        else:
            variables[name] = Variable(text, secret=False)
    return variables


def _steps(raw: list[Any], where: _Locator, problems: list[str]) -> list[Step]:
    steps: list[Step] = []
    for index, item in enumerate(raw):
        loc: tuple[str | int, ...] = ("steps", index)
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(where.at(loc, "a step is a mapping with one key, e.g. "
                                          "`- click: {text: Save}`"))
            continue
        ((kind, value),) = item.items()
        if kind not in _SPEC_OF:
            problems.append(where.at((*loc, kind), f"unknown step; known: {', '.join(STEP_KINDS)}"))
            continue
        if kind == "click" and isinstance(value, str):
            value = {"text": value}  # ``click: Save`` is short for ``click: {text: Save}``
        try:
            spec = _validate_spec(kind, value)
        except ValidationError as exc:
            # An unknown key usually explains the missing one next to it: report it first.
            errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
            problems.extend(where.at((*loc, kind, *e["loc"]), _reason(e, spec_of=kind))
                            for e in errors)
            continue
        except ValueError as exc:
            problems.append(where.at((*loc, kind), str(exc)))
            continue
        steps.append(Step(kind, spec, where.line(loc), _label(kind, value), index))
    return steps


def _validate_spec(kind: str, value: Any) -> Any:
    from pydantic import TypeAdapter

    spec = TypeAdapter(_SPEC_OF[kind]).validate_python(value)
    if kind == "key":
        try:
            parse_chord(spec)
        except (UnknownKeyError, ChordError) as exc:
            raise ValueError(str(exc)) from None
    return spec


def _label(kind: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {_written(v)}" for k, v in value.items())
        return f"{kind}: {{{inner}}}"
    return f"{kind}: {_written(value)}"


def _written(value: Any, limit: int = 70) -> str:
    return shorten(repr(value) if isinstance(value, str) else str(value), limit)


def references(value: Any) -> list[str]:
    """The ``${name}`` references in a spec's strings."""
    if isinstance(value, str):
        return [m.group(1) for m in _REF.finditer(value)]
    if isinstance(value, BaseModel):
        return [r for v in value.model_dump().values() for r in references(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in references(v)]
    return []


def _check_references(steps: Sequence[Step], declared: set[str], where: _Locator,
                      problems: list[str]) -> None:
    known = declared | set(BUILTIN_VARIABLES)
    for step in steps:
        for name in references(step.spec):
            if name not in known:
                problems.append(f"{where.path}:{step.line}: steps[{step.position}]."
                                f"{step.kind}: "
                                f"unknown variable ${{{name}}} (defined: "
                                f"{', '.join(sorted(known))})")
        if step.kind == "query":
            known.add(step.spec.save_as)


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace ``${name}`` with its value (every name was checked when the file loaded)."""
    return _REF.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret value in ``text`` with a placeholder."""
    for secret in secrets:
        text = text.replace(secret, "[secret]")
    return text
