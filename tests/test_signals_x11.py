"""SIGTERM, SIGHUP and SIGINT in the middle of real input: nothing stays held on the X server.

The first tests check :func:`deskpilot.agent.cli.signals.terminate_as_interrupt` in this process
(handlers, threads, the hold-back inside uninterruptible modules); the ``display`` ones do it for
real.

Each case starts ``tests.helpers.input_child`` on the session's Xvfb, waits until it is in the
middle of a long action (a drag with the left button down, shift held through twenty presses,
500 characters typed in chunks of five), signals it, and then asks the X server itself what is
held: ``query_pointer().mask`` for buttons and ``query_keymap()`` for keys. The control cases
show the harness can see a stuck button: a bare SIGTERM (no :func:`terminate_as_interrupt`) and
a SIGKILL (which nothing can catch) both leave it down.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from Xlib import X
from Xlib.display import Display
from Xlib.ext import xtest

from deskpilot.agent.cli import signals
from deskpilot.agent.cli.signals import TerminatedBySignal, terminate_as_interrupt

ROOT = Path(__file__).parent.parent
BUTTON_MASKS = X.Button1Mask | X.Button2Mask | X.Button3Mask | X.Button4Mask | X.Button5Mask

display_test = pytest.mark.display


WATCHED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


@pytest.fixture
def _safe_handlers() -> Iterator[list[int]]:
    """Handlers that record instead of killing pytest, restored afterwards."""
    got: list[int] = []
    saved = {sig: signal.getsignal(sig) for sig in WATCHED}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: got.append(signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield got
    for sig, old in saved.items():
        signal.signal(sig, old)


def test_sigterm_and_sighup_interrupt_inside_and_handlers_come_back(
        _safe_handlers: list[int]) -> None:
    before = {sig: signal.getsignal(sig) for sig in WATCHED}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(TerminatedBySignal) as caught, terminate_as_interrupt():
            os.kill(os.getpid(), sig)
            time.sleep(5)  # interrupted, not slept through
        assert caught.value.signum == sig
        assert isinstance(caught.value, KeyboardInterrupt)
        assert str(caught.value) == f"terminated by {sig.name}"
        assert {s: signal.getsignal(s) for s in WATCHED} == before
    os.kill(os.getpid(), signal.SIGTERM)  # the recording handler is back
    assert _safe_handlers == [signal.SIGTERM]


def test_sigint_stays_a_plain_keyboard_interrupt(_safe_handlers: list[int]) -> None:
    with pytest.raises(KeyboardInterrupt) as caught, terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    assert type(caught.value) is KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_custom_sigint_handler_and_an_ignored_sighup_are_left_alone(
        _safe_handlers: list[int]) -> None:
    def custom(signum: int, frame: object) -> None:
        _safe_handlers.append(signum)

    signal.signal(signal.SIGINT, custom)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with terminate_as_interrupt():
        assert signal.getsignal(signal.SIGINT) is custom
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert _safe_handlers == [signal.SIGINT]


def test_handlers_come_back_when_the_block_raises(_safe_handlers: list[int]) -> None:
    before = {sig: signal.getsignal(sig) for sig in WATCHED}
    with pytest.raises(ValueError, match="boom"), terminate_as_interrupt():
        raise ValueError("boom")
    assert {s: signal.getsignal(s) for s in WATCHED} == before


def test_outside_the_main_thread_it_does_nothing(_safe_handlers: list[int]) -> None:
    before = {sig: signal.getsignal(sig) for sig in WATCHED}
    seen: list[object] = []

    def worker() -> None:
        with terminate_as_interrupt():
            seen.append({s: signal.getsignal(s) for s in WATCHED})

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]


def _fake_library(source: str) -> types.ModuleType:
    """A module named ``fakelib`` holding ``source``: a stand-in for Xlib or pyautogui."""
    module = types.ModuleType("fakelib")
    exec(compile(source, "<fakelib>", "exec"), module.__dict__)
    return module


FAKELIB = """
import os, signal, time

def signalled_mid_call(seconds):
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # busy: the handler runs between these bytecodes
        pass
    return "completed"
"""


def test_an_interrupt_inside_an_uninterruptible_module_waits_for_the_call_to_return(
        _safe_handlers: list[int]) -> None:
    fakelib = _fake_library(FAKELIB)
    results: list[str] = []
    started = time.monotonic()
    with pytest.raises(TerminatedBySignal), terminate_as_interrupt(uninterruptible=("fakelib",)):
        results.append(fakelib.signalled_mid_call(0.3))
        time.sleep(5)
    assert results == ["completed"]  # the call finished, the interrupt came right after
    assert 0.3 <= time.monotonic() - started < 2


def test_a_held_back_interrupt_is_raised_when_the_block_ends(
        _safe_handlers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "RETRY_S", 60.0)  # no redelivery: only the exit can raise it
    fakelib = _fake_library(FAKELIB)
    results: list[str] = []
    with pytest.raises(TerminatedBySignal), terminate_as_interrupt(uninterruptible=("fakelib",)):
        results.append(fakelib.signalled_mid_call(0.05))
    assert results == ["completed"]


def test_a_held_back_interrupt_is_not_lost_to_an_error_that_ends_the_block(
        _safe_handlers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "RETRY_S", 60.0)
    fakelib = _fake_library(FAKELIB)
    with pytest.raises(TerminatedBySignal) as caught, \
            terminate_as_interrupt(uninterruptible=("fakelib",)):
        fakelib.signalled_mid_call(0.05)
        raise ValueError("the action failed")
    assert isinstance(caught.value.__context__, ValueError)


def test_an_uninterruptible_call_that_never_returns_is_interrupted_anyway(
        _safe_handlers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "MAX_DEFER_S", 0.2)
    fakelib = _fake_library(FAKELIB)
    started = time.monotonic()
    with pytest.raises(TerminatedBySignal), terminate_as_interrupt(uninterruptible=("fakelib",)):
        fakelib.signalled_mid_call(30)
    assert time.monotonic() - started < 2


@pytest.fixture(scope="module")
def xconn(display: str) -> Iterator[Display]:
    """A connection of our own to the test display, to ask the server what is held."""
    conn = Display(display)
    yield conn
    conn.close()


def buttons_held(xconn: Display) -> int:
    """The server's mask of pressed mouse buttons (0 when none)."""
    return int(xconn.screen().root.query_pointer().mask & BUTTON_MASKS)


def keys_held(xconn: Display) -> list[int]:
    """Keycodes the server holds down."""
    return [byte_index * 8 + bit for byte_index, byte in enumerate(xconn.query_keymap())
            for bit in range(8) if byte >> bit & 1]


def xdotool(display: str, *args: str) -> None:
    """Run xdotool on the test display."""
    subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, check=True,
                   capture_output=True, timeout=10)


@pytest.fixture(autouse=True)
def _nothing_left_held(display: str, xconn: Display) -> Iterator[None]:
    # Whatever a case leaves down (the control cases do on purpose) is let go here, so that
    # no other test on the session display starts with a button or key held.
    yield
    if buttons_held(xconn):
        for button in ("1", "2", "3"):
            xdotool(display, "mouseup", button)
    for code in keys_held(xconn):
        xtest.fake_input(xconn, X.KeyRelease, code)
    xconn.sync()
    xdotool(display, "mousemove", "640", "400")
    assert buttons_held(xconn) == 0
    assert keys_held(xconn) == []


class Child:
    """One ``input_child`` process on the test display."""

    def __init__(self, display: str, action: str, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.input_child", action, mode], cwd=ROOT,
            env={**os.environ, "DISPLAY": display}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until the child says its action is under way."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        assert line.strip() == "ready", self.finish(timeout_s=5)

    def finish(self, timeout_s: float = 15.0) -> str:
        """Wait for the exit; a child that hangs is asked for its stacks, then killed."""
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack
            time.sleep(0.5)
            self.proc.kill()
            out, err = self.proc.communicate()
            return f"HUNG for {timeout_s} s\nstdout:\n{out}\nstderr:\n{err}"
        return f"exit {self.proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def children(display: str) -> Iterator[list[Child]]:
    """Children started by a case; any still running at the end are killed."""
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


def start(children: list[Child], display: str, action: str, mode: str) -> Child:
    child = Child(display, action, mode)
    children.append(child)
    return child


def wait_until(condition: Callable[[], object], timeout_s: float) -> bool:
    """Poll ``condition()`` until true or the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return False


@display_test
def test_sigterm_mid_drag_releases_the_button(display: str, xconn: Display,
                                             children: list[Child]) -> None:
    child = start(children, display, "drag", "guarded")
    child.wait_ready()
    assert buttons_held(xconn) & X.Button1Mask  # really mid-drag: the server has it down
    started = time.monotonic()
    child.proc.send_signal(signal.SIGTERM)
    report = child.finish()
    assert child.proc.returncode == 130, report
    assert "interrupted: TerminatedBySignal('terminated by SIGTERM')" in report
    assert "releasing input left held by an interrupted action: left" in report
    assert time.monotonic() - started < 3, report  # not after the drag ran its course
    assert buttons_held(xconn) == 0
    assert keys_held(xconn) == []


@display_test
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_termination_mid_hold_releases_the_held_modifier(display: str, xconn: Display,
                                                         children: list[Child],
                                                         sig: signal.Signals) -> None:
    shift = xconn.keysym_to_keycode(0xFFE1)  # Shift_L
    child = start(children, display, "hold", "guarded")
    child.wait_ready()
    assert shift in keys_held(xconn)
    child.proc.send_signal(sig)
    report = child.finish()
    assert child.proc.returncode == 130, report
    assert f"terminated by {sig.name}" in report
    assert "releasing input left held by an interrupted action: shift" in report
    assert keys_held(xconn) == []
    assert buttons_held(xconn) == 0


# After "ready" (the first chunk typed), each case waits a different time and then until the
# server shows some key down, so the signal lands at varied points of the typing: between
# chunks, in pyautogui between a press and its release, inside an X round trip.
TYPING_DELAYS_S = (0.0, 0.05, 0.12, 0.25, 0.4, 0.6)


@display_test
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("delay_s", TYPING_DELAYS_S)
def test_signal_mid_typing_releases_every_key(display: str, xconn: Display,
                                              children: list[Child], sig: signal.Signals,
                                              delay_s: float) -> None:
    child = start(children, display, "type", "guarded")
    child.wait_ready()
    time.sleep(delay_s)
    wait_until(lambda: keys_held(xconn), timeout_s=1.0)
    child.proc.send_signal(sig)
    report = child.finish()
    assert child.proc.returncode == 130, report
    assert "interrupted:" in report and "finished" not in report, report
    assert keys_held(xconn) == [], report
    assert buttons_held(xconn) == 0


@display_test
@pytest.mark.parametrize(("mode", "sig"), [("bare", signal.SIGTERM),
                                           ("guarded", signal.SIGKILL)],
                         ids=["sigterm_without_guard", "sigkill"])
def test_control_a_killed_process_leaves_the_button_down(display: str, xconn: Display,
                                                         children: list[Child], mode: str,
                                                         sig: signal.Signals) -> None:
    # The harness can see what the guard prevents: SIGTERM's default action and SIGKILL end
    # the process in the kernel, no finally block runs, and the X server keeps the button
    # down after the client is gone. (The autouse fixture lets go of it afterwards.)
    child = start(children, display, "drag", mode)
    child.wait_ready()
    child.proc.send_signal(sig)
    report = child.finish()
    assert child.proc.returncode == -sig, report
    assert "interrupted" not in report
    time.sleep(0.2)  # the server has noticed the client is gone
    assert buttons_held(xconn) & X.Button1Mask, report
