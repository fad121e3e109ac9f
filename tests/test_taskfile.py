"""Task files: good ones load into the right steps; each malformed one names file:line:key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deskpilot.actions.text import redact
from deskpilot.agent.cli.main import main
from deskpilot.agent.tasks.file import TaskFileError, load_task, load_tasks
from deskpilot.agent.tasks.spec import substitute

BAD = sorted((Path(__file__).parent / "data" / "bad_tasks").glob("*.yaml"))
EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def _expected(path: Path) -> tuple[int, str, str]:
    """The ``# expect: LINE: KEY: MESSAGE`` header of a malformed example."""
    first = path.read_text().splitlines()[0]
    match = re.match(r"# expect: (\d+): ([^:]+): (.*)$", first)
    assert match, f"{path} lacks its expect header"
    return int(match.group(1)), match.group(2), match.group(3).strip()


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_malformed_file_names_file_line_and_key(path: Path) -> None:
    line, key, message = _expected(path)
    with pytest.raises(TaskFileError) as caught:
        load_task(path)
    problems = caught.value.problems
    assert problems[0].startswith(f"{path}:{line}: {key}: "), problems[0]
    assert message in problems[0]


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_malformed_file_exits_2_before_anything_runs(
        path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)  # nothing may start: no display is needed
    line, key, _ = _expected(path)
    assert main(["run", str(path), "--headless"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}: {key}: " in err
    assert "nothing was run" in err


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError) as caught:
        load_tasks(BAD[:3])
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_load_and_need_no_model(path: Path) -> None:
    task = load_task(path)
    assert task.steps and not task.needs_model
    assert task.setup.launch


def test_steps_keep_their_lines_labels_and_shorthands(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\n"
        "steps:\n"
        "  - click: Save\n"
        "  - click: {target: the gear icon}\n"
        "  - query: {ask: total, save_as: total}\n"
        "  - expect: {text: '${total}'}\n")
    task = load_task(path)
    assert [s.line for s in task.steps] == [3, 4, 5, 6]
    assert task.steps[0].spec.text == "Save"
    assert task.steps[0].label == "click: {text: 'Save'}"
    assert [s.needs_model for s in task.steps] == [False, True, True, False]
    assert task.needs_model


def test_a_query_variable_is_usable_only_after_the_query(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nsteps:\n  - type: '${total}'\n"
                    "  - query: {ask: total, save_as: total}\n")
    with pytest.raises(TaskFileError, match=r"t.yaml:3: steps\[0\].type: unknown variable"):
        load_task(path)


def test_environment_values_are_secret(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nvariables:\n  user: alice\n  pw: ${env:PW}\n"
                    "steps:\n  - type: '${user} ${pw}'\n")
    task = load_task(path, environ={"PW": "hunter2-canary"})
    assert task.variables["pw"].secret and not task.variables["user"].secret
    assert task.secrets == ("hunter2-canary",)
    typed = substitute("${user} ${pw}", {k: v.value for k, v in task.variables.items()})
    assert typed == "alice hunter2-canary"
    assert redact(f"typed {typed!r}", task.secrets) == "typed 'alice [secret]'"


def test_missing_file_and_non_utf8_are_task_file_errors(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="no such task file"):
        load_task(tmp_path / "absent.yaml")
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00name: x")
    with pytest.raises(TaskFileError, match="cannot read it"):
        load_task(binary)


def test_yaml_tags_cannot_build_objects(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\nsteps:\n  - wait: 1\n")
    with pytest.raises(TaskFileError, match=r"t\.yaml:1: yaml: "):
        load_task(path)


def test_model_steps_without_a_model_on_disk_exit_2_before_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKPILOT_MODELS", str(tmp_path / "models"))
    monkeypatch.delenv("DISPLAY", raising=False)
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nsteps:\n  - check: the dialog is gone\n")
    assert main(["run", str(path), "--headless"]) == 2
    err = capsys.readouterr().err
    assert "these tasks have model steps" in err and "models pull" in err
