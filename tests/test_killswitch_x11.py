"""The kill hotkey and the person's hand-back report on a real X display.

xdotool stands in for the person; the X server itself is asked afterwards what is still held
(``query_pointer().mask`` for buttons, ``query_keymap()`` for keys).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from Xlib import X
from Xlib.display import Display

from deskpilot.actions.executor import Interrupted, PyAutoGuiDevice, execute
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import Drag
from deskpilot.agent.clock import SystemClock
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import RunResult, Status
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.takeover import TakeoverWatch, parse_hotkey
from deskpilot.grounding.capture import FakeScreen
from deskpilot.grounding.geometry import Point
from deskpilot.models.scripted import ScriptedRuntime
from tests.helpers.fakes import JOINT_SETTINGS

pytestmark = [pytest.mark.display,
              pytest.mark.skipif(shutil.which("xdotool") is None, reason="needs xdotool")]

BUTTON_MASKS = X.Button1Mask | X.Button2Mask | X.Button3Mask | X.Button4Mask | X.Button5Mask
SLOW = 40  # the drag's sleeps, stretched: settle 2 s, then 0.4 s per step


def xdotool(display: str, *args: str) -> None:
    """Run xdotool on the test display."""
    subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, check=True,
                   timeout=10)


def eventually(check: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    """Poll ``check`` until it holds or the time is up."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def keys_held(xconn: Display) -> list[int]:
    """Keycodes the server holds down."""
    return [byte_index * 8 + bit for byte_index, byte in enumerate(xconn.query_keymap())
            for bit in range(8) if byte >> bit & 1]


def kill_mid_drag(agent: threading.Thread, xconn: Display, person: Callable[..., None],
                  killed: threading.Event) -> None:
    """Start ``agent``; once its drag is under way (button down, pointer moving), press the
    hotkey; then wait for the agent to end."""

    def dragging() -> bool:
        pointer = xconn.screen().root.query_pointer()
        return bool(pointer.mask & X.Button1Mask) and pointer.root_x > 200

    agent.start()
    try:
        assert eventually(dragging, timeout_s=5.0), "the drag never got under way"
        person("key", "ctrl+alt+k")
        assert killed.wait(2.0)
    finally:
        agent.join(10)


def assert_cut_short_and_nothing_held(xconn: Display) -> None:
    """The pointer never reached the drag's end (x 800), and no button or key is down."""
    pointer = xconn.screen().root.query_pointer()
    assert pointer.root_x < 800
    assert pointer.mask & BUTTON_MASKS == 0
    assert keys_held(xconn) == []


@pytest.fixture
def xconn(display: str) -> Iterator[Display]:
    conn = Display(display)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def person(display: str) -> Iterator[Callable[..., None]]:
    """xdotool as the person; whatever they pressed is let go afterwards, even on failure."""
    xdotool(display, "mousemove", "640", "400")  # a known start: a move to where it is is none
    try:
        yield lambda *args: xdotool(display, *args)
    finally:
        xdotool(display, "keyup", "ctrl", "alt", "k")
        xdotool(display, "mouseup", "1")


@pytest.fixture
def watch(person: Callable[..., None]) -> Iterator[tuple[TakeoverWatch, threading.Event]]:
    """A live watch, started after the person's fixture put the pointer in its place."""
    killed = threading.Event()
    with TakeoverWatch(on_kill=killed.set) as w:
        yield w, killed


def test_pynput_checks_the_key_names(display: str) -> None:
    with pytest.raises(ValueError, match="unknown key or a key twice"):
        parse_hotkey("<ctrl>+<nosuchkey>")
    with pytest.raises(ValueError, match="unknown key or a key twice"):
        parse_hotkey("<ctrl>+<ctrl>+k")
    assert parse_hotkey("<ctrl>+<alt>+<f12>") == "<ctrl>+<alt>+<f12>"


def test_the_hotkey_kills_when_nothing_is_acting(
        watch: tuple[TakeoverWatch, threading.Event], person: Callable[..., None]) -> None:
    w, killed = watch
    assert not w.killed()
    person("key", "ctrl+alt+k")
    assert killed.wait(2.0)
    assert w.killed()
    assert w.taken() == "a key press"  # its keys looked like a takeover too: harmless


def test_other_keys_do_not_kill(watch: tuple[TakeoverWatch, threading.Event],
                                person: Callable[..., None]) -> None:
    w, killed = watch
    person("key", "ctrl+k", "alt+k", "k", "ctrl+alt+j")
    assert eventually(lambda: w.reset() == ["typed 8 keys"])
    assert not killed.wait(0.3) and not w.killed()


def test_the_hotkey_ends_a_drag_midway_and_nothing_stays_held(
        watch: tuple[TakeoverWatch, threading.Event], person: Callable[..., None],
        xconn: Display) -> None:
    w, killed = watch
    drag = Resolved(Drag(action="drag", box=(0.1, 0.1, 0.2, 0.2), to_box=(0.6, 0.6, 0.7, 0.7)),
                    points=(Point(200, 150), Point(800, 600)))
    outcome: list[BaseException | None] = []

    def act() -> None:
        try:
            with w.acting():
                execute(drag, PyAutoGuiDevice(), sleep=lambda s: time.sleep(s * SLOW),
                        should_stop=w.killed)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    kill_mid_drag(threading.Thread(target=act, name="agent"), xconn, person, killed)
    assert len(outcome) == 1 and isinstance(outcome[0], Interrupted), outcome
    assert w.taken() is None  # the agent was acting: its drag and the hotkey's keys are not
    assert_cut_short_and_nothing_held(xconn)


def test_what_the_person_did_comes_back_as_actions(
        watch: tuple[TakeoverWatch, threading.Event], person: Callable[..., None]) -> None:
    w, _ = watch
    person("mousemove", "50", "60")
    assert eventually(lambda: w.taken() is not None)
    assert w.taken() == "the pointer moved to (50, 60)"
    person("mousemove", "70", "80")
    person("type", "--delay", "5", "secret")
    person("mousemove", "200", "210", "click", "1")
    person("mousemove", "300", "300", "mousedown", "1", "mousemove", "400", "420", "mouseup", "1")
    person("mousemove", "500", "500")
    expected = ["move(70, 80)", "typed 6 keys", "click(left, 200, 210)",
                "drag(left, 300, 300, 400, 420)", "move(500, 500)"]
    did: list[str] = []  # every xdotool call has returned: at most the last move is late
    assert eventually(lambda: did.extend(w.reset()) or did[-1:] == ["move(500, 500)"]), did
    assert did == expected  # "secret" was counted, never spelled out
    assert w.taken() is None and not w.killed()


class _SlowClock(SystemClock):
    """Real time, with the drag's pauses stretched so the hotkey lands in the middle."""

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * SLOW)


def test_the_hotkey_ends_the_agents_run_mid_drag(
        watch: tuple[TakeoverWatch, threading.Event], person: Callable[..., None],
        xconn: Display, tmp_path: Path) -> None:
    """The whole loop: the model answers a drag, the person presses the hotkey during it."""
    w, killed = watch
    drag = ('{"action": "drag", "target": "slider", "box": [0.15, 0.18, 0.16, 0.19], '
            '"to_box": [0.62, 0.74, 0.63, 0.75]}')
    results: list[RunResult] = []
    frames = [np.full((800, 1280, 3), 30 * i, np.uint8) for i in range(4)]
    agent = threading.Thread(target=lambda: results.append(run_agent(
        "drag the slider", runtime=ScriptedRuntime([drag, drag]), screen=FakeScreen(frames),
        device=PyAutoGuiDevice(), record=RunDir(tmp_path), clock=_SlowClock(),
        takeover=w, settings=JOINT_SETTINGS)), name="agent")
    kill_mid_drag(agent, xconn, person, killed)
    (result,) = results
    assert result.status is Status.INTERRUPTED
    assert result.message.startswith("stopped by the kill switch during drag")
    assert_cut_short_and_nothing_held(xconn)
