"""The real input device on Xvfb: events arrive as sent, and nothing stays held afterwards.

The X server is the judge: a window of our own receives the events, ``query_pointer`` reports
which buttons are down and ``query_keymap`` which keys are.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from Xlib import XK, X
from Xlib.display import Display

from deskpilot.actions.executor import PyAutoGuiDevice, execute, release_all
from deskpilot.actions.keys import KEY_NAMES
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import Button, Click, Drag, Hold, Key, Move, Scroll, Type
from deskpilot.grounding.geometry import Point

pytestmark = pytest.mark.display

BOX = (0.4, 0.4, 0.6, 0.6)
BUTTON_MASKS = X.Button1Mask | X.Button2Mask | X.Button3Mask | X.Button4Mask | X.Button5Mask
TOGGLES = frozenset({"capslock", "numlock", "scrolllock"})
# Where the test window sits on the root window.
WIN_X, WIN_Y = 100, 100


@pytest.fixture(scope="module")
def xconn(display: str) -> Iterator[Display]:
    """A connection of our own to the test display, to ask the server what is held."""
    conn = Display(display)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def device(display: str) -> PyAutoGuiDevice:
    """The real device, bound to the test display."""
    return PyAutoGuiDevice()


@pytest.fixture(autouse=True)
def _pointer_home(display: str, device: PyAutoGuiDevice) -> Iterator[None]:
    # A test that leaves the pointer in a fail-safe corner must not break the next one.
    xdotool(display, "mousemove", "640", "400")
    yield
    release_all(device, keys=KEY_NAMES)
    xdotool(display, "mousemove", "640", "400")


@pytest.fixture
def window(xconn: Display) -> Iterator[Any]:
    """A mapped, focused 300x200 window at (100, 100) that listens to pointer and keys."""
    screen = xconn.screen()
    win = screen.root.create_window(
        WIN_X, WIN_Y, 300, 200, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
        background_pixel=screen.white_pixel,
        event_mask=(X.ButtonPressMask | X.ButtonReleaseMask | X.KeyPressMask
                    | X.KeyReleaseMask | X.StructureNotifyMask))
    win.map()
    collect(xconn, lambda evs: any(e.type == X.MapNotify for e in evs))
    win.set_input_focus(X.RevertToParent, X.CurrentTime)
    xconn.sync()
    yield win
    win.destroy()
    xconn.sync()
    collect(xconn, lambda evs: False, timeout_s=0.05)  # drain what is left


def xdotool(display: str, *args: str) -> str:
    """Run xdotool on the test display."""
    env = {**os.environ, "DISPLAY": display}
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True,
                          check=True, timeout=10).stdout


def pointer(display: str) -> tuple[int, int]:
    """The pointer position as xdotool reports it."""
    fields = dict(line.split("=", 1) for line in
                  xdotool(display, "getmouselocation", "--shell").split())
    return int(fields["X"]), int(fields["Y"])


def buttons_held(xconn: Display) -> int:
    """The server's mask of pressed mouse buttons (0 when none)."""
    return xconn.screen().root.query_pointer().mask & BUTTON_MASKS


def keys_held(xconn: Display) -> list[int]:
    """Keycodes the server holds down."""
    return [byte_index * 8 + bit for byte_index, byte in enumerate(xconn.query_keymap())
            for bit in range(8) if byte >> bit & 1]


def keycode(xconn: Display, keysym_name: str) -> int:
    """The keycode of a keysym on the test display."""
    return xconn.keysym_to_keycode(XK.string_to_keysym(keysym_name))


def collect(xconn: Display, done: Callable[[list[Any]], bool],
            timeout_s: float = 5.0) -> list[Any]:
    """Read events until ``done(events)`` or the timeout."""
    events: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        while xconn.pending_events():
            events.append(xconn.next_event())
        if done(events):
            break
        time.sleep(0.01)
    return events


def of_type(events: list[Any], kind: int) -> list[Any]:
    """The events of one X event type."""
    return [e for e in events if e.type == kind]


def test_move_puts_the_pointer_there(display: str, device: PyAutoGuiDevice) -> None:
    execute(Resolved(Move(action="move", box=BOX), points=(Point(321, 234),)), device)
    assert pointer(display) == (321, 234)


@pytest.mark.parametrize(("button", "detail"), [("left", 1), ("middle", 2), ("right", 3)])
def test_click_lands_on_the_window_at_the_point(xconn: Display, device: PyAutoGuiDevice,
                                                window: Any, button: Button,
                                                detail: int) -> None:
    action = Click(action="click", box=BOX, button=button, clicks=2)
    execute(Resolved(action, points=(Point(250, 200),)), device)
    events = collect(xconn, lambda evs: len(of_type(evs, X.ButtonRelease)) >= 2)
    presses = of_type(events, X.ButtonPress)
    assert [(e.detail, e.event_x, e.event_y) for e in presses] == [
        (detail, 250 - WIN_X, 200 - WIN_Y)] * 2
    assert len(of_type(events, X.ButtonRelease)) == 2
    assert buttons_held(xconn) == 0


@pytest.mark.parametrize(("direction", "detail"), [
    ("up", 4), ("down", 5), ("left", 6), ("right", 7)])
def test_scroll_direction_maps_to_the_x_wheel_buttons(xconn: Display, device: PyAutoGuiDevice,
                                                      window: Any, direction: str,
                                                      detail: int) -> None:
    action = Scroll(action="scroll", box=BOX, direction=direction, amount=3)
    execute(Resolved(action, points=(Point(200, 150),)), device)
    events = collect(xconn, lambda evs: len(of_type(evs, X.ButtonRelease)) >= 3)
    assert [e.detail for e in of_type(events, X.ButtonPress)] == [detail] * 3
    assert buttons_held(xconn) == 0


def test_key_chord_reaches_the_window_with_its_modifiers(xconn: Display,
                                                        device: PyAutoGuiDevice,
                                                        window: Any) -> None:
    execute(Resolved(Key(action="key", keys="ctrl+shift+t"), keys=("ctrl", "shift", "t")), device)
    t = keycode(xconn, "t")
    events = collect(xconn, lambda evs: len(of_type(evs, X.KeyRelease)) >= 3)
    (press,) = [e for e in of_type(events, X.KeyPress) if e.detail == t]
    assert press.state & (X.ControlMask | X.ShiftMask) == X.ControlMask | X.ShiftMask
    assert keys_held(xconn) == []


def typed(xconn: Display, events: list[Any]) -> str:
    """The text a core-protocol client would read from these key presses."""
    shifts = {keycode(xconn, "Shift_L"), keycode(xconn, "Shift_R")}
    chars = []
    for e in of_type(events, X.KeyPress):
        if e.detail in shifts:
            continue
        sym = 0
        if e.state & X.ShiftMask:
            sym = xconn.keycode_to_keysym(e.detail, 1)
        # A key with one keysym gives it with or without shift (X core protocol rule).
        sym = sym or xconn.keycode_to_keysym(e.detail, 0)
        chars.append({XK.XK_Return: "\n", XK.XK_Tab: "\t"}.get(sym) or chr(sym))
    return "".join(chars)


def test_typed_text_arrives_as_typed(xconn: Display, device: PyAutoGuiDevice,
                                     window: Any) -> None:
    text = "Hello, World! 1+1=2\t(ok) ~_~ <b>a<>b</b> {x: [y]} 'q' \"r\" |\\/ `@#$%^&*?\n"
    execute(Resolved(Type(action="type", text=text)), device, type_chunk=7)
    enter = keycode(xconn, "Return")
    events = collect(xconn, lambda evs: any(
        e.type == X.KeyRelease and e.detail == enter for e in evs))
    assert typed(xconn, events) == text
    assert keys_held(xconn) == []


@pytest.mark.parametrize("key", ["<", ">", "+", "a", "7", "space"])
def test_single_keys_arrive_as_named(xconn: Display, device: PyAutoGuiDevice, window: Any,
                                     key: str) -> None:
    execute(Resolved(Key(action="key", keys=key), keys=(key,)), device)
    events = collect(xconn, lambda evs: any(
        e.type == X.KeyRelease and e.detail not in {keycode(xconn, "Shift_L")} for e in evs))
    assert typed(xconn, events) == {"space": " "}.get(key, key)
    assert keys_held(xconn) == []


def test_every_canonical_key_presses_a_real_key(xconn: Display,
                                               device: PyAutoGuiDevice) -> None:
    dead = []
    for name in sorted(KEY_NAMES):
        device.key_down(name)
        down = keys_held(xconn)
        device.key_up(name)
        if name in TOGGLES:  # press again so caps lock does not change later typing
            device.key_down(name)
            device.key_up(name)
        if not down:
            dead.append(name)
        assert keys_held(xconn) == [], name
    assert dead == []
    assert xconn.screen().root.query_pointer().mask & X.LockMask == 0


class _FailingMoveWhilePressed(PyAutoGuiDevice):
    """Raises on the first move after a button went down, noting what the server held then."""

    def __init__(self, xconn: Display) -> None:
        super().__init__()
        self._xconn = xconn
        self._pressed = False
        self.held_at_failure = 0

    def button_down(self, button: Button) -> None:
        super().button_down(button)
        self._pressed = True

    def move(self, x: int, y: int) -> None:
        if self._pressed:
            self.held_at_failure = buttons_held(self._xconn)
            raise ConnectionError("the display went away mid-drag")
        super().move(x, y)


def test_failure_mid_drag_releases_the_button(xconn: Display) -> None:
    device = _FailingMoveWhilePressed(xconn)
    resolved = Resolved(Drag(action="drag", box=BOX, to_box=BOX),
                        points=(Point(300, 300), Point(500, 400)))
    with pytest.raises(ConnectionError):
        execute(resolved, device)
    assert device.held_at_failure & X.Button1Mask  # the failure really hit a held button
    assert buttons_held(xconn) == 0


class _FailingKey(PyAutoGuiDevice):
    """Raises when one key is pressed (after pressing it, with ``land``), noting what was held."""

    def __init__(self, xconn: Display, key: str, *, land: bool) -> None:
        super().__init__()
        self._xconn, self._key, self._land = xconn, key, land
        self.held_at_failure: list[int] = []

    def key_down(self, key: str) -> None:
        if key == self._key:
            if self._land:
                super().key_down(key)
            self.held_at_failure = keys_held(self._xconn)
            raise ConnectionError("the display went away mid-hold")
        super().key_down(key)


@pytest.mark.parametrize("land", [False, True], ids=["before_press", "after_press"])
def test_failure_mid_hold_releases_every_key(xconn: Display, land: bool) -> None:
    device = _FailingKey(xconn, "a", land=land)
    action = Hold(action="hold", hold="ctrl+alt", keys="shift+a", presses=2)
    with pytest.raises(ConnectionError):
        execute(Resolved(action, keys=("shift", "a"), hold=("ctrl", "alt")), device)
    expected = {keycode(xconn, "Control_L"), keycode(xconn, "Alt_L"), keycode(xconn, "Shift_L")}
    if land:
        expected.add(keycode(xconn, "a"))
    assert set(device.held_at_failure) == expected
    assert keys_held(xconn) == []


class _PersonSlamsCorner(PyAutoGuiDevice):
    """The person throws the pointer into the top-left corner right after a press."""

    def __init__(self, display: str) -> None:
        super().__init__()
        self._display = display

    def button_down(self, button: Button) -> None:
        super().button_down(button)
        xdotool(self._display, "mousemove", "0", "0")

    def key_down(self, key: str) -> None:
        super().key_down(key)
        xdotool(self._display, "mousemove", "0", "0")


def test_failsafe_corner_mid_drag_aborts_and_still_releases(display: str,
                                                           xconn: Display) -> None:
    import pyautogui

    device = _PersonSlamsCorner(display)
    resolved = Resolved(Drag(action="drag", box=BOX, to_box=BOX),
                        points=(Point(300, 300), Point(500, 400)))
    with pytest.raises(pyautogui.FailSafeException):
        execute(resolved, device)
    assert pointer(display) == (0, 0)
    assert buttons_held(xconn) == 0
    assert pyautogui.FAILSAFE is True


def test_failsafe_corner_mid_hold_aborts_and_still_releases(display: str,
                                                           xconn: Display) -> None:
    import pyautogui

    device = _PersonSlamsCorner(display)
    action = Hold(action="hold", hold="ctrl", keys="a", presses=3)
    with pytest.raises(pyautogui.FailSafeException):
        execute(Resolved(action, keys=("a",), hold=("ctrl",)), device)
    assert keys_held(xconn) == []
    assert pyautogui.FAILSAFE is True


def test_release_all_frees_a_stuck_button_and_modifier(display: str, xconn: Display,
                                                      device: PyAutoGuiDevice) -> None:
    device.key_down("ctrl")
    device.key_down("win")
    device.button_down("left")
    xdotool(display, "mousemove", "0", "0")  # even from a fail-safe corner
    assert keys_held(xconn)
    assert buttons_held(xconn)
    assert release_all(device) == ()
    assert keys_held(xconn) == []
    assert buttons_held(xconn) == 0
