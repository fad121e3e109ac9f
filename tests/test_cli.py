"""The command line as a new user meets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deskpilot.agent.cli.main import main
from deskpilot.grounding.xvfb import launched

ROOT = Path(__file__).parent.parent


def _deskpilot(*args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "deskpilot", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("run", "models", "doctor", "demo", "examples:", "--model tiny", "--dry-run"):
        assert word in out


def test_run_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in ("--model", "--mmproj", "--max-steps", "--monitor", "--dry-run", "--replay"):
        assert flag in out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "x", "--max-steps", "0"])
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_run_without_display_says_how_to_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    out = subprocess.run([sys.executable, "-P", "-m", "deskpilot", "run", "x", "--runs-dir",
                          str(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env,
                         check=False, timeout=60)
    assert out.returncode == 2
    assert "DISPLAY is not set" in out.stderr and "Traceback" not in out.stderr


def test_models_list_shows_catalog_and_directory(tmp_path: Path) -> None:
    out = _deskpilot("models", "list", "--models-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "phi4rv-15b-q4km" in out.stdout and "missing" in out.stdout
    assert str(tmp_path) in out.stdout


def test_missing_model_names_the_pull_command(display: str, tmp_path: Path) -> None:
    out = _deskpilot("run", "x", "--runs-dir", str(tmp_path / "runs"),
                     env={"DISPLAY": display, "DESKPILOT_MODELS": str(tmp_path / "m")})
    assert out.returncode == 2
    assert "deskpilot models pull phi4rv-15b-q4km" in out.stderr
    assert "Traceback" not in out.stderr


def test_make_tiny_writes_a_pair(tmp_path: Path) -> None:
    out = _deskpilot("models", "make-tiny", str(tmp_path), "--text-layers", "1")
    assert out.returncode == 0, out.stderr
    assert len(list(tmp_path.glob("*.gguf"))) == 2 and "random weights" in out.stdout


def test_doctor_reports_each_check(display: str, tmp_path: Path) -> None:
    out = _deskpilot("doctor", env={"DISPLAY": display, "DESKPILOT_MODELS": str(tmp_path)})
    lines = out.stdout
    assert "[ok  ] display" in lines and "[ok  ] input" in lines and "[ok  ] llama.cpp" in lines
    assert "[FAIL] model files" in lines and "deskpilot models pull" in lines
    assert out.returncode == 1


def test_dry_run_replay_prints_steps_and_writes_trajectory(display: str, tmp_path: Path) -> None:
    replay = tmp_path / "replies.jsonl"
    replay.write_text(json.dumps({"answer": '{"action": "click", "target": "middle"}'}) + "\n"
                      + json.dumps({"answer": "[0.4, 0.4, 0.6, 0.6]"}) + "\n"  # grounding
                      + json.dumps({"answer": '{"action": "done", "answer": "ok"}'}) + "\n")
    # Something on the screen: an all-black frame is taken for a dead or locked display.
    with launched(["xcalc", "-geometry", "+10+10"], display, window="Calculator"):
        out = _deskpilot("run", "click the middle", "--replay", str(replay), "--dry-run",
                         "--runs-dir", str(tmp_path / "runs"), env={"DISPLAY": display})
    assert out.returncode == 0, out.stderr
    assert "DRY RUN" in out.stdout
    assert 'click "middle"' in out.stdout and "[dry_run]" in out.stdout
    assert "capture" in out.stdout and "model" in out.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert len((run_dir / "trajectory.jsonl").read_text().splitlines()) == 2


def test_tiny_model_run_against_the_display(display: str, tmp_path: Path) -> None:
    with launched(["xcalc", "-geometry", "+10+10"], display, window="Calculator"):
        out = _deskpilot("run", "open the calculator menu", "--model", "tiny", "--max-steps",
                         "3", "--max-patches", "1024", "--runs-dir", str(tmp_path / "runs"),
                         env={"DISPLAY": display, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert out.returncode in (0, 1), out.stderr
    assert "step   1" in out.stdout and "trajectory:" in out.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "trajectory.jsonl").read_text().strip()
    assert json.loads((run_dir / "run.json").read_text())["model"].startswith("deskpilot-tiny")


def test_demo_replays_and_checks_the_screen(tmp_path: Path) -> None:
    out = _deskpilot("demo", "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "REPLAY" in out.stdout and "matches" in out.stdout


@pytest.mark.parametrize("budget", ["255", "3601"])
def test_image_budget_outside_the_models_range_is_refused(
        budget: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "x", "--max-patches", budget])
    assert info.value.code == 2
    assert "must be between 256 and 3600" in capsys.readouterr().err
