"""``deskpilot run FILE... --concurrency N``: one child process and one Xvfb per task, one report.

The end-to-end tests start the real CLI as a subprocess, as CI would, with real xcalc and OCR;
the unit tests cover how a child is started and how its results come back exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deskpilot.agent.cli.errors import UserError
from deskpilot.agent.cli.lanes import lane_argv
from deskpilot.agent.cli.main import main, parse_run
from deskpilot.agent.cli.options import as_lane
from deskpilot.agent.records import Outcome, StepRecord, Timings
from deskpilot.agent.reports.lane import read_lane_result, write_lane_result
from deskpilot.agent.reports.outputs import Outputs
from deskpilot.agent.tasks.cache import CacheMode, GroundingCache, cache_key
from deskpilot.agent.tasks.results import ScriptStep, SuiteResult, TaskResult
from deskpilot.grounding.template import cut
from deskpilot.grounding.visual import save_png
from deskpilot.models.serve_local import LocalServer as LlamaServer
from tests.test_report import make_suite
from tests.test_template import make_screen

ROOT = Path(__file__).parent.parent
needs_x = pytest.mark.skipif(not all(shutil.which(p) for p in ("Xvfb", "xcalc", "xdotool")),
                             reason="needs Xvfb, xcalc and xdotool (make deps)")

# examples/xcalc-add.yaml's first steps, with the keys looked for in the keypad only. The
# window shows before xcalc has drawn it; with four tasks and their OCR sharing the CPU that
# can take a while, so each task first waits for the calculator's "0".
PAINTED = '  - wait_for: {{text: "0", region: [400, 150, 640, 200], timeout_s: 30}}\n'
XCALC_78 = """\
name: {name}
setup:
  launch:
    - command: xcalc -geometry +400+150
      wait_for: {{window: Calculator}}
steps:
""" + PAINTED + """\
  - click: {{text: "7", region: [400, 200, 650, 560]}}
  - click: {{text: "8", region: [400, 200, 650, 560]}}
  - expect: {{text: "78", region: [400, 150, 640, 200]}}
"""
# A quick task: the calculator starts and shows 0 (or, with a wrong digit, fails).
XCALC_SHOWS = """\
name: {name}
setup:
  launch:
    - command: xcalc -geometry +400+150
      wait_for: {{window: Calculator}}
steps:
  - expect: {{text: "{digit}", region: [400, 150, 640, 200], timeout_s: {timeout}}}
"""
XCALC_WAITS = """\
name: {name}
setup:
  launch:
    - command: xcalc
      wait_for: {{window: Calculator}}
steps:
  - wait: 120
"""
# The task's own setup kills the process running it: a crash, with no hook in the code.
CRASHES = """\
name: crashes
setup:
  launch:
    - command: sh -c "sleep 0.5; kill -9 $PPID"
steps:
  - wait: 60
"""


def deskpilot(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    return subprocess.run([sys.executable, "-P", "-m", "deskpilot", "run", *map(str, args)],
                          cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def cases_of(junit: Path) -> list[ET.Element]:
    return ET.parse(junit).getroot().findall("testsuite/testcase")


def display_of(run_dir: str | Path) -> str:
    return str(json.loads((Path(run_dir) / "run.json").read_text())["display"])


def gone(display: str, timeout_s: float = 10.0) -> bool:
    """Whether the Xvfb of ``display`` has stopped (it removes its socket on the way out)."""
    socket = Path("/tmp/.X11-unix") / f"X{display.lstrip(':')}"
    deadline = time.monotonic() + timeout_s
    while socket.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not socket.exists()


# --- end to end, on real Xvfb displays ---------------------------------------------------------


@pytest.mark.display
@needs_x
def test_four_task_files_run_at_once_each_on_its_display_with_one_report(tmp_path: Path
                                                                         ) -> None:
    names = ["adds first", "adds second", "adds third", "adds fourth"]
    files = [write(tmp_path, f"calc{i}.yaml", XCALC_78.format(name=n))
             for i, n in enumerate(names)]
    out = tmp_path / "out"
    t0 = time.monotonic()
    done = deskpilot(*files, "--headless", "--concurrency", "4", "--junit", out / "junit.xml",
                     "--summary", out / "summary.json", "--report", out / "report",
                     "--cache-dir", out / "cache", "--runs-dir", out / "runs")
    wall = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr

    assert [case.get("name") for case in cases_of(out / "junit.xml")] == names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"passed": 4, "failed": 0, "error": 0}
    assert [t["name"] for t in summary["tasks"]] == names
    displays = [display_of(t["run_dir"]) for t in summary["tasks"]]
    assert len(set(displays)) == 4, displays
    assert summary["display"] == ", ".join(displays)
    page = (out / "report" / "index.html").read_text()
    assert all(n in page for n in names)
    assert "4 passed, 0 failed, 0 errors" in done.stdout and "[4/4] PASSED" in done.stdout

    logs = sorted((out / "runs").glob("*-concurrency/*.log"))
    assert len(logs) == 4 and all(p.stat().st_mode & 0o777 == 0o600 for p in logs)
    assert all(d.stat().st_mode & 0o777 == 0o700 for d in (out / "runs").glob("*-concurrency"))
    # Run one after the other, the four would take at least the sum of their own times.
    task_sum = sum(t["seconds"] for t in summary["tasks"])
    print(f"\n4 tasks at once: wall {wall:.1f}s (suite {summary['seconds']:.1f}s), "
          f"sum of the tasks' own times {task_sum:.1f}s")
    assert summary["seconds"] < task_sum


@pytest.mark.display
@needs_x
def test_one_failing_task_fails_alone_and_replayed_model_steps_may_run_at_once(
        tmp_path: Path) -> None:
    # --replay is cheap (no model is loaded), so it may run in several children at once.
    # The model's own grounding answer, a bare list (the default --grounding native).
    replies = write(tmp_path, "replies.jsonl", json.dumps(
        {"answer": "[0.3617, 0.535, 0.3719, 0.5563]"}) + "\n")
    files = [
        write(tmp_path, "a.yaml", XCALC_SHOWS.format(name="shows 0", digit="0", timeout=30)),
        write(tmp_path, "b.yaml", XCALC_SHOWS.format(name="shows 16", digit="16", timeout=1)),
        write(tmp_path, "c.yaml", "name: model presses 7\nsetup:\n  launch:\n"
                                  "    - command: xcalc -geometry +400+150\n"
                                  "      wait_for: {window: Calculator}\n"
                                  "steps:\n" + PAINTED.format() +
                                  "  - click: {target: the seven key}\n"
                                  "  - expect: {text: '7', region: [400, 150, 640, 200]}\n"),
        write(tmp_path, "d.yaml", XCALC_SHOWS.format(name="shows 0 too", digit="0", timeout=30)),
    ]
    junit = tmp_path / "junit.xml"
    done = deskpilot(*files, "--headless", "--concurrency", "4", "--replay", replies,
                     "--junit", junit, "--summary", tmp_path / "summary.json",
                     "--cache", "off", "--runs-dir", tmp_path / "runs")
    assert done.returncode == 1, done.stdout + done.stderr
    cases = cases_of(junit)
    assert [c.find("failure") is not None for c in cases] == [False, True, False, False]
    assert all(c.find("error") is None for c in cases)
    failure = cases[1].find("failure")
    assert failure is not None and "expect: {text: '16'" in failure.get("message", "")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"passed": 3, "failed": 1, "error": 0}
    assert "FAILED shows 16" in done.stdout and "output:" in done.stdout


@pytest.mark.display
@needs_x
def test_a_killed_task_becomes_an_error_naming_its_log(tmp_path: Path) -> None:
    files = [write(tmp_path, "crash.yaml", CRASHES),
             write(tmp_path, "ok.yaml", XCALC_SHOWS.format(name="shows 0", digit="0", timeout=30))]
    junit, runs = tmp_path / "junit.xml", tmp_path / "runs"
    done = deskpilot(*files, "--headless", "--concurrency", "2", "--junit", junit,
                     "--runs-dir", runs)
    assert done.returncode == 1, done.stdout + done.stderr
    crashed, passed = cases_of(junit)
    error = crashed.find("error")
    assert error is not None and passed.find("error") is None
    assert passed.find("failure") is None
    message = error.get("message", "")
    assert "killed by SIGKILL" in message and "wrote no result" in message
    log = Path(message.rsplit("its output is in ", 1)[1])
    assert log.is_file() and "crashes" in log.read_text()
    # The killed child could not stop its Xvfb; the parent did.
    (run_dir,) = [p for p in runs.iterdir() if p.name.endswith("-crashes")]
    assert gone(display_of(run_dir))


@pytest.mark.display
@needs_x
def test_sigterm_stops_every_task_and_writes_the_reports_of_what_ran(tmp_path: Path) -> None:
    files = [write(tmp_path, f"w{i}.yaml", XCALC_WAITS.format(name=f"waits {i}"))
             for i in (1, 2, 3)]
    junit, runs = tmp_path / "junit.xml", tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    parent = subprocess.Popen(
        [sys.executable, "-P", "-m", "deskpilot", "run", *map(str, files), "--headless",
         "--concurrency", "2", "--junit", str(junit), "--runs-dir", str(runs)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(runs.glob("*-waits-*/run.json"))) < 2:  # both tasks are under way
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        parent.send_signal(signal.SIGTERM)
        out, err = parent.communicate(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 143, out + err  # 128 + SIGTERM
    cases = cases_of(junit)
    assert [c.get("name") for c in cases] == ["waits 1", "waits 2"]
    for case in cases:
        error = case.find("error")
        assert error is not None and error.get("message") == "terminated by signal 15"
    assert "not run: waits 3" in err
    for run_dir in runs.glob("*-waits-*"):
        assert gone(display_of(run_dir))


QUERY_TASK = """\
name: {name}
setup:
  launch:
    - command: xcalc -geometry +400+150
      wait_for: {{window: Calculator}}
steps:
""" + PAINTED + """\
  - query: {{ask: "the number on the calculator's display", save_as: shown}}
"""


@pytest.mark.display
@pytest.mark.llama
@needs_x
def test_four_headless_sessions_share_one_model_server_and_all_pass(
        tmp_path: Path, llama_server: LlamaServer) -> None:
    # The random weights read nonsense, but greedily and within the query's grammar, so the
    # step passes with whatever well-formed value comes back: what is tested is that four
    # sessions at once each got their answers from the one server.
    names = [f"reads {i}" for i in (1, 2, 3, 4)]
    files = [write(tmp_path, f"q{i}.yaml", QUERY_TASK.format(name=n))
             for i, n in enumerate(names)]
    served = served_requests(llama_server.log)
    junit, summary_path = tmp_path / "junit.xml", tmp_path / "summary.json"
    done = deskpilot(*files, "--headless", "--concurrency", "4", "--backend", "openai",
                     "--base-url", llama_server.base_url, "--model", llama_server.model,
                     "--temperature", "0", "--junit", junit, "--summary", summary_path,
                     "--runs-dir", tmp_path / "runs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [c.get("name") for c in cases_of(junit)] == names
    summary = json.loads(summary_path.read_text())
    assert summary["counts"] == {"passed": 4, "failed": 0, "error": 0}
    displays = set()
    for task in summary["tasks"]:
        query = json.loads((Path(task["run_dir"]) / "steps.jsonl").read_text().splitlines()[1])
        assert query["source"] == "model" and query["model_text"], query
        assert query["timings"]["model"] > 0
        displays.add(display_of(task["run_dir"]))
    assert len(displays) == 4
    assert served_requests(llama_server.log) - served >= 4


def served_requests(log: Path) -> int:
    """Chat completions the server has answered so far (uvicorn's access log)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count('"POST /v1/chat/completions HTTP/1.1" 200')


# --- refused before anything runs --------------------------------------------------------------


def test_a_bad_file_among_them_exits_2_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [write(tmp_path, f"ok{i}.yaml", XCALC_78.format(name=f"ok {i}")) for i in (1, 2)]
    bad = write(tmp_path, "bad.yaml", "name: bad\nsteps:\n  - clik: Save\n")
    runs = tmp_path / "runs"
    code = main(["run", *map(str, files), str(bad), "--headless", "--concurrency", "3",
                 "--runs-dir", str(runs)])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.yaml:3: steps[0].clik: unknown step" in err and "nothing was run" in err
    assert not runs.exists()


def test_concurrency_is_for_task_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "open the calculator", "--concurrency", "2"]) == 2
    assert "--concurrency and --shard run task files" in capsys.readouterr().err


def test_in_process_model_steps_at_once_are_refused_with_a_pointer_to_a_server(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [write(tmp_path, f"q{i}.yaml", f"name: reads {i}\nsteps:\n"
                                            "  - query: {ask: the number shown, save_as: n}\n")
             for i in (1, 2)]
    runs = tmp_path / "runs"
    code = main(["run", *map(str, files), "--model", "tiny", "--concurrency", "2",
                 "--runs-dir", str(runs)])
    assert code == 2
    err = capsys.readouterr().err
    assert "would load 2 copies of the model" in err
    assert "--backend openai --base-url URL" in err and "docs/scaling.md" in err
    assert not runs.exists()


def test_run_help_teaches_concurrency(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--concurrency N" in out and "own private Xvfb display" in out
    assert "--lane" not in out and "--result-json" not in out


# --- how a child is started, and how its results come back -------------------------------------


def test_a_child_gets_the_parents_arguments_and_its_lane() -> None:
    argv = ["-v", "run", "a.yaml", "b.yaml", "--concurrency", "2", "--junit", "j.xml"]
    assert lane_argv(argv, 1, Path("/r/2.json")) == [
        *argv, "--lane", "1", "--result-json", "/r/2.json"]
    # After "--" every word is a task file: the lane's options go before it.
    assert lane_argv(["run", "--concurrency", "2", "--", "a.yaml"], 0, Path("r.json")) == [
        "run", "--concurrency", "2", "--lane", "0", "--result-json", "r.json", "--", "a.yaml"]


def test_a_lane_keeps_its_file_and_every_option_but_the_suite_outputs() -> None:
    argv = ["run", "a.yaml", "b.yaml", "c.yaml", "--concurrency", "3", "--junit", "j.xml",
            "--summary", "s.json", "--report", "rep", "--cache", "read-only",
            "--screen-size", "1920x1080", "--model-timeout", "9", "--allow", "sensitive_keys"]
    lane = as_lane(parse_run(lane_argv(argv, 2, Path("r.json"))))
    assert lane.tasks == ("c.yaml",)
    assert lane.outputs == Outputs(lane_result=Path("r.json"))
    assert lane.files.headless and lane.files.xvfb and lane.files.concurrency == 1
    assert (lane.files.cache, lane.files.screen_size, lane.model.timeout_s, lane.safety.allow) == (
        CacheMode.READ_ONLY, (1920, 1080), 9.0, {"sensitive_keys"})
    with pytest.raises(UserError, match="--lane 3: there are 3 task files"):
        as_lane(parse_run(lane_argv(argv, 3, Path("r.json"))))


def test_task_results_come_back_exactly(tmp_path: Path) -> None:
    suite = make_suite(tmp_path)
    step = suite.tasks[1].steps[1]
    agent = replace(step.agent_steps[0], action={"action": "click", "box": [0.1, 0.2, 0.3, 0.4]},
                    model_timings={"prefill": 0.5}, image_size=(640, 400), image_tokens=256)
    tasks = (*suite.tasks[:1], replace(suite.tasks[1], steps=(
        *suite.tasks[1].steps[:1], replace(step, agent_steps=(agent, *step.agent_steps[1:])),
        *suite.tasks[1].steps[2:])), *suite.tasks[2:])
    for task in tasks:
        back = TaskResult.from_record(json.loads(json.dumps(task.to_record())))
        assert back == task
        for s in task.steps:
            assert ScriptStep.from_json(json.loads(json.dumps(s.to_json()))) == s
    record = StepRecord(index=1, outcome=Outcome.DENIED, summary="press ctrl+alt+del",
                        answer="{}", error="sensitive key", timings=Timings(model=1.0))
    assert StepRecord.from_json(json.loads(json.dumps(record.to_json()))) == record

    path = tmp_path / "lane" / "result.json"
    write_lane_result(path, SuiteResult(tasks, 1.5, "2025-01-01T00:00:00+00:00", ":7",
                                        (1280, 800), interrupted=True))
    assert path.stat().st_mode & 0o777 == 0o600
    got = read_lane_result(path)
    assert (got.tasks, got.display, got.screen_size, got.interrupted) == (
        tasks, ":7", (1280, 800), True)


def test_a_malformed_result_file_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    for text in ("{}", '{"version": 1, "display": ":1", "screen_size": [1, 2], '
                       '"interrupted": false, "tasks": [{"name": "x"}]}', "not json"):
        path.write_text(text)
        with pytest.raises(ValueError):
            read_lane_result(path)


def test_a_cache_entry_mixed_by_two_writers_is_not_trusted(tmp_path: Path) -> None:
    rgb, boxes = make_screen()
    mine, theirs = cut(rgb, boxes["Save"]), cut(rgb, boxes["Save"])
    key = cache_key("save", "text:Save", (1280, 800))
    cache = GroundingCache(tmp_path, CacheMode.READ_WRITE)
    assert cache.put(key, mine, label="text:Save")
    assert cache.get(key) is not None
    # Another run stored the same key at the same moment: its crop landed after our JSON.
    save_png(tmp_path / f"{key}.png", np.ascontiguousarray(theirs.rgb[::-1]))
    assert cache.get(key) is None


def test_by_default_a_run_is_one_task_at_a_time() -> None:
    options = parse_run(["run", "a.yaml"])
    assert (options.files.concurrency, options.files.lane, options.outputs.lane_result) == (
        1, None, None)


def test_bench_serve_writes_model_tasks_and_counts_their_model_steps(tmp_path: Path) -> None:
    from deskpilot.agent.bench.serve import model_steps, write_tasks
    from deskpilot.agent.tasks.file import load_tasks

    tasks = load_tasks(write_tasks(tmp_path, 3, 2))
    assert [t.name for t in tasks] == ["bench reads 1", "bench reads 2", "bench reads 3"]
    assert all(t.needs_model and len(t.steps) == 2 for t in tasks)
    run = tmp_path / "run"
    run.mkdir()
    steps = [{"kind": "query", "source": "model", "model_text": '{"value": "0"}'},
             {"kind": "query", "source": "model", "model_text": ""},  # never answered
             {"kind": "expect", "source": "ocr", "model_text": ""},
             {"kind": "do", "source": "model", "model_text": "x", "agent_steps": [{}, {}, {}]}]
    (run / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    assert model_steps({"tasks": [{"run_dir": str(run)}, {"run_dir": None}]}) == 4
