"""The step registry is the one list of step kinds: specs, handlers, model rule and docs agree."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest

from deskpilot.agent.tasks.file import load_task
from deskpilot.agent.tasks.steps import STEPS

ROOT = Path(__file__).resolve().parents[1]


def _plain(tp: object) -> object:
    """A spec type without its Annotated constraints (``Annotated[str, ...]`` is ``str``)."""
    return typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp


@pytest.mark.parametrize("kind", list(STEPS))
def test_each_handler_takes_the_spec_its_kind_validates(kind: str) -> None:
    handler = STEPS[kind].handler
    first = next(iter(inspect.signature(handler).parameters))
    hints = typing.get_type_hints(handler)
    assert hints[first] is _plain(STEPS[kind].spec), f"{kind}: {handler.__qualname__}"


def test_every_kind_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+): ", (ROOT / "docs" / "tasks.md").read_text(),
                                re.M))
    assert documented == set(STEPS)


def test_the_model_rule_comes_from_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text("""\
name: every kind
steps:
  - click: Save
  - click: {at: [5, 5]}
  - click: {target: the gear icon}
  - type: hello
  - key: ctrl+s
  - scroll: {direction: up}
  - wait: 0.5
  - wait_for: {text: Saved}
  - expect: {text: "15"}
  - expect_not: {text: Error}
  - screenshot: {name: home}
  - expect_file: {path: note.txt}
  - do: open the menu
  - check: the menu is open
  - query: {ask: the total, save_as: total}
""")
    task = load_task(path)
    assert {s.kind for s in task.steps} == set(STEPS)
    needs = [(s.label, s.needs_model) for s in task.steps if s.needs_model]
    assert [label for label, _ in needs] == [
        "click: {target: 'the gear icon'}", "do: 'open the menu'", "check: 'the menu is open'",
        "query: {ask: 'the total', save_as: 'total'}"]
    assert task.needs_model
    assert task.steps[0].label == "click: {text: 'Save'}"  # the shorthand, spelled out


def test_a_kind_check_refuses_what_pydantic_cannot_judge(tmp_path: Path) -> None:
    from deskpilot.agent.tasks.file import TaskFileError

    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nsteps:\n  - key: ctrl+nosuchkey\n")
    with pytest.raises(TaskFileError, match=r"bad.yaml:3: steps\[0\]\.key: "):
        load_task(path)
