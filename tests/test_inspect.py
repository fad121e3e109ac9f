"""``deskpilot inspect``: every step line it prints loads and clicks the thing it was printed
for; duplicates get a region; ``--window`` by accessible name or X11 title; IMAGE mode with
``--json`` and ``--out``; bad input as one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from deskpilot.actions.executor import RecordingDevice
from deskpilot.agent.cli.errors import UserError
from deskpilot.agent.cli.inspect import Target, a11y_targets, in_window, ocr_targets
from deskpilot.agent.tasks.cache import CacheMode
from deskpilot.agent.tasks.file import load_task
from deskpilot.agent.tasks.results import TaskStatus
from deskpilot.agent.tasks.run import run_task
from deskpilot.grounding.a11y import A11yElement, FakeTree
from deskpilot.grounding.ocr import FakeReader, TextBox, TextLine
from deskpilot.grounding.windows import WindowInfo
from tests.test_taskrun import H, W, draw, services, task_file

SHOWING = frozenset({"showing", "visible"})
# Two "OK" buttons (two dialogs), a name with quotes, a backslash and a colon, and a label.
ELEMENTS = [
    A11yElement("OK", "push button", SHOWING, (100, 100, 160, 130), "First"),
    A11yElement("OK", "push button", SHOWING, (400, 100, 460, 130), "Second"),
    A11yElement('Save "draft": C:\\tmp', "push button", SHOWING, (100, 300, 260, 330), "First"),
    A11yElement("OK", "label", SHOWING, (100, 200, 130, 220), "First"),
]
LINES = [
    TextLine("Print", (600, 400, 640, 420), 0.99, (TextBox("Print", (600, 400, 640, 420), 0.99),)),
    TextLine("7", (100, 500, 110, 520), 0.99, (TextBox("7", (100, 500, 110, 520), 0.99),)),
    TextLine("7", (300, 500, 310, 520), 0.99, (TextBox("7", (300, 500, 310, 520), 0.99),)),
]


def _clicks(tmp_path: Path, target: Target) -> tuple[int, int]:
    """Run the target's step line as a one-step task on fakes; where the click landed."""
    device = RecordingDevice()
    svc = services(tmp_path, draw({}), FakeReader(LINES), mode=CacheMode.OFF, device=device)
    svc.a11y = FakeTree(ELEMENTS)
    path = task_file(tmp_path, f"steps:\n  - {target.step}\n", name="inspected")
    result = run_task(load_task(path), svc)
    assert result.status is TaskStatus.PASSED, (target.step, result.message)
    moves = [c for c in device.calls if c[0] == "move"]
    return moves[-1][1], moves[-1][2]


def test_every_step_line_loads_and_clicks_its_own_target(tmp_path: Path) -> None:
    targets = a11y_targets(ELEMENTS, W, H) + ocr_targets(LINES, W, H)
    assert len(targets) == len(ELEMENTS) + len(LINES)
    for target in targets:
        x, y = _clicks(tmp_path, target)
        x1, y1, x2, y2 = target.box
        assert x1 <= x < x2 and y1 <= y < y2, (target.step, (x, y))


def test_a_duplicate_gets_a_region_and_a_unique_one_does_not() -> None:
    steps = {t.box: t.step for t in a11y_targets(ELEMENTS, W, H) + ocr_targets(LINES, W, H)}
    assert steps[(100, 100, 160, 130)] == \
        'click: {name: "OK", role: push button, region: [92, 92, 168, 138]}'
    # The label "OK" differs by role: its own line needs no region.
    assert steps[(100, 200, 130, 220)] == 'click: {name: "OK", role: label}'
    assert steps[(100, 300, 260, 330)] == \
        'click: {name: "Save \\"draft\\": C:\\\\tmp", role: push button}'
    assert steps[(600, 400, 640, 420)] == 'click: "Print"'
    assert steps[(100, 500, 110, 520)] == 'click: {text: "7", region: [92, 492, 118, 528]}'


def test_window_by_accessible_name_else_by_x11_title_or_class() -> None:
    kept, lines = in_window(ELEMENTS, LINES, "second")
    assert [e.window for e in kept] == ["Second"] and lines == []
    calc = WindowInfo(7, "Calculator", ("xcalc", "XCalc"), (80, 480, 200, 540))
    kept, lines = in_window(ELEMENTS, LINES, "xcalc", [calc])
    assert kept == [] and [line.box for line in lines] == [(100, 500, 110, 520)]
    with pytest.raises(UserError, match=r"no window named like 'mail'.*'Calculator'"):
        in_window(ELEMENTS, LINES, "mail", [calc])


@pytest.fixture(scope="module")
def shot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A screenshot with "Save" once and "Open" twice."""
    image = Image.new("RGB", (800, 300), "white")
    pen = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    for text, at in (("Save", (40, 40)), ("Open", (40, 180)), ("Open", (500, 180))):
        pen.text(at, text, fill="black", font=font)
    path = tmp_path_factory.mktemp("inspect") / "shot.png"
    image.save(path)
    return path


def _inspect(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "deskpilot", "inspect", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_an_image_is_inspected_as_json_and_as_an_overlay(shot: Path, tmp_path: Path) -> None:
    done = _inspect(str(shot), "--json", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    body = done.stdout[:done.stdout.rindex("]") + 1]
    targets = {(t["text"], tuple(t["box"])): t for t in json.loads(body)}
    texts = sorted(text for text, _ in targets)
    assert texts == ["Open", "Open", "Save"], texts
    steps = sorted(t["step"] for t in targets.values())
    assert steps[0] == 'click: "Save"'
    assert all(s.startswith('click: {text: "Open", region: [') for s in steps[1:])
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlay.png"))
    assert np.all(overlay == (255, 0, 255), axis=2).any()  # OCR text outlined
    assert "click: &quot;Save&quot;" in (tmp_path / "out" / "index.html").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["missing.png"], "cannot read missing.png"),
    (["{shot}", "--window", "x"], "--window needs the live screen"),
])
def test_bad_input_is_one_line_and_exit_2(shot: Path, tmp_path: Path, args: list[str],
                                          message: str) -> None:
    done = _inspect(*(a.format(shot=shot) for a in args), cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_lookalike_is_offered_as_a_person_would_type_it() -> None:
    lines = [TextLine("\N{CJK UNIFIED IDEOGRAPH-4E8C}", (10, 10, 30, 30), 0.9),
             TextLine("\N{MULTIPLICATION SIGN}", (50, 10, 70, 30), 0.9),
             TextLine("*", (90, 10, 110, 30), 0.9)]  # "*" twice once folded: keep as read
    steps = [t.step for t in ocr_targets(lines, W, H)]
    assert steps[0] == 'click: "="'
    assert steps[1] == 'click: "\N{MULTIPLICATION SIGN}"'
    assert steps[2] == 'click: "*"'


def test_windows_and_panels_are_not_offered_as_targets() -> None:
    frame = A11yElement("Book1", "frame", SHOWING, (0, 0, 800, 600), "Book1")
    assert [t.text for t in a11y_targets([frame, *ELEMENTS], W, H)] == \
        [e.name for e in ELEMENTS]
