"""YAML task files: loaded once into immutable objects, every error naming file, line and key.

A task file is data, never code: commands in ``setup.launch`` are split like a shell would but
run without one, and ``${name}`` references are plain text substitution from ``variables``.
The format is documented in ``docs/tasks.md``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator

from deskpilot.actions.categories import ALLOW_NAMES
from deskpilot.actions.text import printable, shorten
from deskpilot.agent.tasks.spec import (
    VARIABLE_NAME,
    VARIABLE_REF,
    BudgetSpec,
    LaunchSpec,
    QuerySpec,
    ScopeSpec,
    SetupSpec,
    SpecModel,
    Step,
    Task,
    TypingSpec,
    Variable,
    baseline_folder,
)
from deskpilot.agent.tasks.steps import STEPS
from deskpilot.grounding.files import read_regular_file, reason

BUILTIN_VARIABLES = ("work_dir", "task_dir")
MAX_TASK_FILE_BYTES = 1_000_000
MAX_DEPTH = 32  # a real task file nests five or six levels


class TaskFileError(ValueError):
    """A task file cannot be used; ``problems`` holds one ``file:line: key: message`` each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class _Header(SpecModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    setup: SetupSpec = SetupSpec()
    budget: BudgetSpec = BudgetSpec()
    typing: TypingSpec = TypingSpec()
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
    problems += _shared_baselines(tasks)
    if problems:
        raise TaskFileError(problems)
    return tasks


def _shared_baselines(tasks: Sequence[Task]) -> list[str]:
    """Two tasks beside each other whose baselines would land in one folder (names that differ
    only in case or punctuation): each would compare against the other's screenshots."""
    owners: dict[tuple[Path, str], Task] = {}
    problems = []
    for task in tasks:
        where = (task.path.parent.resolve(), baseline_folder(task.name))
        first = owners.setdefault(where, task)
        if first is not task and first.name != task.name:
            problems.append(f"{task.path}:1: name: {printable(task.name)!r} keeps its baselines "
                            f"in the same folder as {printable(first.name)!r} ({first.path}): "
                            f"baselines/{where[1]}; rename one of them")
    return problems


def load_task(path: Path, *, environ: Mapping[str, str] | None = None) -> Task:
    """Read and validate one task file."""
    environ = os.environ if environ is None else environ
    text, root = _compose(path)
    where = _Locator(path, root)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # composed fine, but e.g. a !!python tag cannot be built
        raise TaskFileError([_yaml_problem(path, exc)]) from None
    if not isinstance(data, dict):
        raise TaskFileError([where.at((), "a task file is a mapping with name and steps")])
    problems: list[str] = []
    header: _Header | None = None
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
    if header is not None:
        _check_launch_secrets(header.setup.launch, variables, where, problems)
    if problems or header is None:  # a header that did not validate left a problem
        raise TaskFileError(sorted(problems, key=_line_number))
    return Task(name=header.name, path=path, setup=header.setup, budget=header.budget,
                scope=header.scope, variables=variables, allow=frozenset(header.allow),
                steps=tuple(steps), typing=header.typing)


def _check_launch_secrets(launch: tuple[LaunchSpec, ...], variables: Mapping[str, Variable],
                          where: _Locator, problems: list[str]) -> None:
    """Secret variables never go into a launch command: every local user can read a program's
    arguments (``ps``, ``/proc/PID/cmdline``). ``env:`` hands them to the program privately."""
    for i, spec in enumerate(launch):
        for name in VARIABLE_REF.findall(spec.command):
            variable = variables.get(name)
            if variable is not None and variable.secret:
                problems.append(where.at(
                    ("setup", "launch", i, "command"),
                    f"the secret variable ${{{name}}} would be visible to every local user in "
                    f"the program's arguments (ps); pass it in the environment instead: "
                    f"env: {{{name.upper()}: \"${{{name}}}\"}}"))


def _compose(path: Path) -> tuple[str, yaml.Node]:
    """The file's text and its YAML tree, once the text is known to be safe to build.

    Only a regular file is read (a FIFO or a link to ``/dev/zero`` would hang the loader), no
    more than :data:`MAX_TASK_FILE_BYTES`; nesting deeper than :data:`MAX_DEPTH` is refused
    before PyYAML's recursive composer sees it, and so is a key given twice in one mapping
    (PyYAML would silently keep the last one).
    """
    try:
        raw = read_regular_file(path, MAX_TASK_FILE_BYTES)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise TaskFileError([f"{path}: file: no such task file"]) from None
    except UnicodeDecodeError as exc:
        raise TaskFileError([f"{path}: file: cannot read it: not UTF-8 ({exc.reason} at byte "
                             f"{exc.start})"]) from None
    except OSError as exc:
        raise TaskFileError([f"{path}:1: file: cannot read it ({reason(exc)})"]) from None
    try:
        _check_depth(path, text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise TaskFileError([_yaml_problem(path, exc)]) from None
    if node is None:
        raise TaskFileError([f"{path}:1: file: the task file is empty"])
    duplicates = _duplicate_keys(path, node)
    if duplicates:
        raise TaskFileError(duplicates)
    return text, node


def _check_depth(path: Path, text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, reading the event stream (which is not recursive)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 1
                raise TaskFileError([f"{path}:{line}: yaml: nested deeper than {MAX_DEPTH} "
                                     "levels"])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _duplicate_keys(path: Path, root: yaml.Node) -> list[str]:
    """A problem for every key that a mapping holds twice, at the line of the second one."""
    problems: list[str] = []
    todo = [root]
    seen_nodes: set[int] = set()
    while todo:  # a stack, not recursion: aliases may share nodes, so each is visited once
        node = todo.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in keys:
                        problems.append(f"{path}:{line}: {printable(shorten(key.value, 60))}: "
                                        f"duplicate key (first given on line "
                                        f"{keys[key.value]})")
                    else:
                        keys[key.value] = line
                todo += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value
    return sorted(problems, key=_line_number)


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
        kind_of = STEPS.get(spec_of or "")
        fields = getattr(kind_of.spec if kind_of else None, "model_fields", None) or {}
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
        if not VARIABLE_NAME.match(str(name)) or name in BUILTIN_VARIABLES:
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
        if kind not in STEPS:
            problems.append(where.at((*loc, kind), f"unknown step; known: {', '.join(STEPS)}"))
            continue
        try:
            steps.append(_step(kind, value, index, where.line(loc)))
        except ValidationError as exc:
            # An unknown key usually explains the missing one next to it: report it first.
            errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
            problems.extend(where.at((*loc, kind, *e["loc"]), _reason(e, spec_of=kind))
                            for e in errors)
        except ValueError as exc:
            problems.append(where.at((*loc, kind), str(exc)))
    return steps


def build_step(kind: str, value: Any, *, position: int = 0, line: int = 0) -> Step:
    """One step from its kind and value as a task file would hold them, checked the same way;
    ValueError with a one-line reason when they are wrong (for callers other than a file)."""
    if kind not in STEPS:
        raise ValueError(f"unknown step {kind!r}; known: {', '.join(STEPS)}")
    try:
        return _step(kind, value, position, line)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ValueError("; ".join(f"{_key_name((kind, *e['loc']))}: {_reason(e, spec_of=kind)}"
                                   for e in errors)) from None


def _step(kind: str, value: Any, position: int, line: int) -> Step:
    """Validate one step's value against its kind (ValidationError or ValueError if wrong)."""
    step_kind = STEPS[kind]
    if step_kind.shorthand is not None and isinstance(value, str):
        value = {step_kind.shorthand: value}  # ``click: Save`` is ``click: {text: Save}``
    spec = TypeAdapter(step_kind.spec).validate_python(value)
    if step_kind.check is not None:
        step_kind.check(spec)
    return Step(kind, spec, line, _label(kind, value), position,
                needs_model=step_kind.needs_model(spec))


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
        return [m.group(1) for m in VARIABLE_REF.finditer(value)]
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
        if isinstance(step.spec, QuerySpec):  # its answer is a variable from here on
            known.add(step.spec.save_as)


