"""The wheel as a user installs it: built from the tracked files, installed into a fresh venv,
and run from a directory that holds decoy ``agent/`` and ``models/`` packages.

The editable install the Makefile uses hides missing package data and top-level name clashes;
this test does not. It costs about a minute: the venv's packages come from pip's cache (the
Makefile's own install filled it), and llama-cpp-python is not built again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from tests.helpers.browser import chromium, pixels_near, render

ROOT = Path(__file__).resolve().parents[1]
REPO_FOLDERS = ("agent", "actions", "grounding", "models", "tui")
PASS_GREEN = (0x1A, 0x7F, 0x37)  # --pass in report.css: drawn only when the styles apply
# A package that shadows ours by its folder name would break the run loudly.
DECOY = 'raise ImportError("a decoy {name}/ package in the current directory was imported")\n'

pytestmark = [
    pytest.mark.display,
    pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xcalc") is None,
                       reason="needs Xvfb and xcalc (make test-deps installs them)"),
]


def _run(argv: list[str | Path], cwd: Path, timeout: float = 300,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)
    return done


def _tracked_files() -> list[str]:
    done = _run(["git", "ls-files", "-z"], ROOT)
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.split("\0") if name]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the fresh venv, the wheel it installed)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # only what a fresh clone has: the tracked files
    for name in _tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                 base / "dist", source], base)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (base / "dist").glob("deskpilot-*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    done = _run([env_dir / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], base,
                timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    yield env_dir, wheel


@pytest.fixture
def decoys(tmp_path: Path) -> Path:
    """A working directory whose agent/ and models/ packages fail on import."""
    for name in ("agent", "models"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(DECOY.format(name=name))
    return tmp_path


def _site_packages(env_dir: Path) -> Path:
    (site,) = (env_dir / "lib").glob("python3*/site-packages")
    return site


def test_the_wheel_holds_one_package_with_its_data(installed: tuple[Path, Path]) -> None:
    env_dir, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"deskpilot", wheel.name.split("-py3")[0]
                                                 + ".dist-info"}
    tracked = [n for n in _tracked_files() if n.split("/")[0] in (*REPO_FOLDERS, "deskpilot")]
    for name in tracked:  # every module and every data file a command reads
        if name.endswith((".py", ".css", ".jsonl", ".json", ".tcss")) or name.endswith("py.typed"):
            inside = name if name.startswith("deskpilot/") else f"deskpilot/{name}"
            assert inside in names, f"{name} is not in the wheel"
    site = _site_packages(env_dir)
    assert (site / "deskpilot" / "agent" / "loop.py").is_file()
    assert not [d for d in REPO_FOLDERS if (site / d).exists()]
    record = (next(site.glob("deskpilot-*.dist-info")) / "RECORD").read_text().splitlines()
    tops = {line.split(",")[0].split("/")[0] for line in record}
    assert tops - {"..", "deskpilot"} == {next(site.glob("deskpilot-*.dist-info")).name}


def test_help_from_a_directory_with_decoys(installed: tuple[Path, Path], decoys: Path) -> None:
    env_dir, _ = installed
    done = _run([env_dir / "bin" / "deskpilot", "--help"], decoys, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: deskpilot" in done.stdout and "Traceback" not in done.stderr
    done = _run([env_dir / "bin" / "python", "-P", "-c",
                 "import deskpilot; print(deskpilot.__version__, deskpilot.Budget().max_steps)"],
                decoys, timeout=60)
    assert done.returncode == 0 and done.stdout.split()[1] == "30", done.stderr


def test_the_demo_runs_from_the_installed_wheel(installed: tuple[Path, Path],
                                                decoys: Path) -> None:
    env_dir, _ = installed
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = _run([env_dir / "bin" / "deskpilot", "demo", "--runs-dir", decoys / "runs"], decoys,
                env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "matches a calculator showing '15'" in done.stdout


def test_a_task_file_with_report_and_junit(installed: tuple[Path, Path], decoys: Path) -> None:
    env_dir, _ = installed
    shutil.copytree(ROOT / "examples", decoys / "examples")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = _run([env_dir / "bin" / "deskpilot", "run", "examples/xcalc-add.yaml", "--headless",
                 "--xvfb", "--report", "report", "--junit", "junit.xml", "--runs-dir", "runs",
                 "--cache-dir", "cache"], decoys, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 passed, 0 failed, 0 errors" in done.stdout
    assert 'tests="1"' in (decoys / "junit.xml").read_text()
    page = decoys / "report" / "index.html"
    css = (resources.files("deskpilot.agent.data") / "report.css").read_text(encoding="utf-8")
    assert css.strip().splitlines()[0] in page.read_text(encoding="utf-8")  # inlined
    if chromium() is not None:  # and the browser draws it with those styles
        rgb = render(page, decoys / "report.png", (1280, 900), decoys)
        assert pixels_near(rgb, PASS_GREEN) > 30


def test_the_takeover_child_starts_beside_decoys(installed: tuple[Path, Path], decoys: Path,
                                                 display: str) -> None:
    env_dir, _ = installed
    script = ("from deskpilot.agent.takeover import TakeoverWatch\n"
              "with TakeoverWatch(kill_hotkey=None):\n"
              "    print('listening')\n")
    done = _run([env_dir / "bin" / "python", "-P", "-c", script], decoys, timeout=60,
                env={**os.environ, "DISPLAY": display})
    assert done.returncode == 0 and done.stdout.strip() == "listening", done.stderr[-2000:]


def test_a_user_runs_a_fixture_test_and_task_files_with_pytest_xdist(
        installed: tuple[Path, Path], decoys: Path) -> None:
    """The issue's promise: pip install deskpilot, write a ten-line pytest test with the
    desktop fixture, and run it and a folder of task files headless with pytest -n 2."""
    env_dir, _ = installed
    done = _run([env_dir / "bin" / "python", "-m", "pip", "install", "--quiet", "pytest",
                 "pytest-xdist"], decoys, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (decoys / "test_calc.py").write_text(
        "def test_four_plus_five(desktop):\n"
        "    desktop.launch('xcalc', wait_for_window='Calculator')\n"
        "    for key in ('4', '+', '5', '='):\n"
        "        desktop.click(key)\n"
        "    desktop.expect('9', region=(0, 0, 1280, 60))\n")
    shutil.copy2(ROOT / "examples" / "pytest" / "calc-add.desk.yaml", decoys / "add.desk.yaml")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = _run([env_dir / "bin" / "python", "-m", "pytest", "-q", "-n", "2", "-p",
                 "no:cacheprovider", "--deskpilot-report", "report", "--deskpilot-runs-dir",
                 "runs"], decoys, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout
    assert (decoys / "report" / "index.html").is_file()
