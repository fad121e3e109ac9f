"""Issue 15 at the command line: exit codes, refusals, lanes that overrun, what the doctor,
``models verify`` and the gate say."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from deskpilot.agent.cli import lanes
from deskpilot.agent.cli.errors import exit_for_interrupt
from deskpilot.agent.cli.main import main, parse_run
from deskpilot.agent.tasks.file import load_tasks
from deskpilot.grounding.capture import FakeScreen
from tests.test_taskrun import H, W

ROOT = Path(__file__).resolve().parent.parent


def test_dry_run_of_task_files_is_refused_with_exit_2_and_nothing_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    task = tmp_path / "t.yaml"
    task.write_text(f"name: t\nsetup:\n  launch: touch {marker}\nsteps:\n  - type: abc\n")
    assert main(["run", str(task), "--dry-run", "--headless"]) == 2
    assert "--dry-run" in capsys.readouterr().err
    assert not marker.exists()


def test_models_verify_fails_when_the_files_are_missing(tmp_path: Path) -> None:
    assert main(["models", "--models-dir", str(tmp_path), "verify"]) == 1


def test_doctor_without_a_display_says_to_set_one_not_to_fix_xtest(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from deskpilot.agent.cli.doctor import _display, _input

    monkeypatch.delenv("DISPLAY", raising=False)
    for check in (_display(), _input()):
        assert not check.ok
        assert "DISPLAY" in check.fix and "--headless" in check.fix
        assert "XTEST" not in check.fix


def test_a_denied_sensitive_action_names_the_allow_entry_that_permits_it() -> None:
    from deskpilot.actions.categories import Category
    from deskpilot.actions.gate import describe
    from deskpilot.actions.policy import Concern

    for category in (Category.SENSITIVE_CLICKS, Category.SENSITIVE_KEYS):
        line = describe(Concern(category, "the label reads 'Delete'"))
        assert f"allow: [{category.value}]" in line and f"--allow {category.value}" in line


def test_one_exit_rule_after_a_signal() -> None:
    assert [exit_for_interrupt(s) for s in (None, signal.SIGINT, signal.SIGHUP,
                                            signal.SIGTERM)] == [130, 130, 129, 143]


TASK_WAITS = "name: waits\nbudget: {timeout_s: 120}\nsteps:\n  - wait: 60\n"


@pytest.mark.display
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_task_run_stopped_by_a_signal_exits_128_plus_its_number(tmp_path: Path,
                                                                   sig: int) -> None:
    task = tmp_path / "t.yaml"
    task.write_text(TASK_WAITS)
    runs = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.Popen([sys.executable, "-P", "-m", "deskpilot", "run", str(task),
                             "--headless", "--runs-dir", str(runs)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(runs.glob("*-waits/steps.jsonl")) and not list(runs.glob("*/run.json")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, out + err


def test_a_lane_past_its_hard_deadline_is_stopped_with_its_group_and_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = []
    for name, budget in (("hangs", 1), ("also hangs", 2)):
        path = tmp_path / f"{name.replace(' ', '-')}.yaml"
        path.write_text(f"name: {name}\nbudget: {{timeout_s: {budget}}}\nsteps:\n  - wait: 0\n")
        files.append(path)
    tasks = load_tasks(files)
    leftovers = tmp_path / "pids"
    leftovers.mkdir()

    def start(index: int, task: object, argv: object, logs: Path) -> lanes._Lane:
        # A child that never finishes, with a grandchild in its process group.
        code = (f"import subprocess, time, pathlib; p = subprocess.Popen(['sleep', '600']); "
                f"pathlib.Path({str(leftovers)!r}, str(p.pid)).touch(); time.sleep(600)")
        log = logs / f"{index}.log"
        proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        now = time.monotonic()
        return lanes._Lane(index, tasks[index], proc, log, logs / f"{index}.json", now,
                           now + tasks[index].budget.timeout_s + lanes.LANE_MARGIN_S)

    monkeypatch.setattr(lanes, "LANE_MARGIN_S", 1.0)
    monkeypatch.setattr(lanes, "_start", start)
    junit = tmp_path / "junit.xml"
    options = parse_run(["run", *map(str, files), "--concurrency", "2", "--junit", str(junit),
                         "--runs-dir", str(tmp_path / "runs")])
    t0 = time.monotonic()
    assert lanes.run_lanes(tasks, options) == 1
    assert time.monotonic() - t0 < 30
    cases = ET.parse(junit).getroot().findall("testsuite/testcase")
    assert len(cases) == 2
    for case in cases:
        error = case.find("error")
        assert error is not None and "hard deadline" in error.get("message", "")
    for pid in (int(p.name) for p in leftovers.iterdir()):  # the grandchildren went too
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_a_setup_window_counts_once_the_pointer_rests_on_it_and_the_screen_is_still(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deskpilot.agent.tasks import run
    from deskpilot.agent.tasks.file import load_task
    from deskpilot.agent.tasks.results import TaskStatus
    from deskpilot.grounding.ocr import FakeReader
    from tests.test_taskrun import services

    # A window still being drawn: nine different frames, then the last one steadily.
    screen = FakeScreen([np.full((H, W, 3), 20 * i, np.uint8) for i in range(1, 10)])

    focused: list[str] = []
    monkeypatch.setattr(run, "wait_for_window", lambda display, name, timeout_s: "42")
    monkeypatch.setattr(run, "is_private", lambda display: True)
    monkeypatch.setattr(run, "point_at_window", lambda display, window: focused.append(window)
                        or True)
    task = tmp_path / "t.yaml"
    task.write_text("name: t\nsetup:\n  wait_for: {window: App}\nsteps:\n  - wait: 0\n")
    svc = services(tmp_path, np.zeros((H, W, 3), np.uint8), FakeReader([]))
    svc.screen = screen
    result = run.run_task(load_task(task), svc)
    assert result.status is TaskStatus.PASSED, result.message
    assert focused == ["42"] and screen.grabs >= 12  # nine changing frames, then three still
