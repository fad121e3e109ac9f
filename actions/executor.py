"""Turn a resolved action into input events, and never leave a key or button held.

The executor speaks to an :class:`InputDevice`, a handful of low-level primitives in screen
points. :class:`PyAutoGuiDevice` is the real one; :class:`RecordingDevice` is the fake the tests
use. :func:`execute` remembers every key and button it pressed and releases whatever is still
down on every way out, exceptions and interrupts included: a modifier left held after a crash
would turn the person's next keystrokes into shortcuts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from deskpilot.actions.keys import KEY_NAMES, MODIFIERS, UnknownKeyError
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import (
    AskUser,
    Button,
    Click,
    Done,
    Drag,
    Fail,
    Hold,
    Key,
    Move,
    Scroll,
    Type,
    Wait,
)
from deskpilot.grounding.geometry import Point

log = logging.getLogger(__name__)

BUTTONS: tuple[Button, ...] = ("left", "right", "middle")

# A drag is a press, a few intermediate moves and a release: toolkits only start a drag after
# the pointer has moved past a threshold while pressed, and some ignore a single jump.
DRAG_STEPS = 8
DRAG_SETTLE_S = 0.05
DRAG_STEP_S = 0.01
# A Wait with a stop callback sleeps in slices so a stop request is not ignored for 30 s.
WAIT_SLICE_S = 0.25


class Interrupted(Exception):
    """A stop request landed mid-action; everything pressed has been released."""


class InputDevice(Protocol):
    """Low-level input primitives in screen points."""

    def move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)``."""

    def button_down(self, button: Button) -> None:
        """Press a mouse button where the pointer is."""

    def button_up(self, button: Button) -> None:
        """Release a mouse button where the pointer is."""

    def scroll(self, clicks: int, horizontal: bool) -> None:
        """Scroll ``clicks`` notches: positive is up (vertical) or right (horizontal)."""

    def key_down(self, key: str) -> None:
        """Press a key given by its canonical name."""

    def key_up(self, key: str) -> None:
        """Release a key given by its canonical name."""

    def write(self, text: str, interval: float = 0.0) -> None:
        """Type text literally (characters, not key names), ``interval`` seconds apart."""


@runtime_checkable
class ChecksText(Protocol):
    """A device that can tell, before typing, which characters it could not type."""

    def untypeable(self, text: str) -> str:
        """The characters of ``text`` this device cannot type ("" when it can type them all)."""
        ...


def untypeable(device: InputDevice, text: str) -> str:
    """What ``device`` cannot type of ``text`` (devices that cannot tell are trusted)."""
    return device.untypeable(text) if isinstance(device, ChecksText) else ""


def _point_pyautogui_at(display: str) -> None:
    """Send pyautogui's X11 input to ``display`` from now on.

    pyautogui opens ``$DISPLAY`` once, when it is first imported, and keeps that connection in a
    module global its functions read at every call. A process that runs one private display
    after another (one per test, say) must swap that connection, or its input would go to the
    first display. Its key table was read from the first display too; Xvfb servers all start
    with the same keymap, so it stays right for them.
    """
    from pyautogui import _pyautogui_x11 as x11
    from Xlib.display import Display

    current = x11._display
    # Always a fresh connection: a display number is reused once its server has stopped, so
    # the same name may now be another server.
    x11._display = Display(display)
    with contextlib.suppress(Exception):  # the old display may be gone already
        current.close()


class PyAutoGuiDevice:
    """The real input device, on pyautogui.

    pyautogui is imported here rather than at module import because on X11 it opens the display
    as a side effect of being imported. ``display`` names the X display to act on when it may
    not be the one pyautogui first opened (default ``$DISPLAY``; X11 only, elsewhere there is
    one desktop).
    """

    def __init__(self, display: str | None = None) -> None:
        with warnings.catch_warnings():
            # pyscreeze and mouseinfo start `which` at import and never close its pipes; the
            # leak is theirs and harmless, but under -W error it would fail whoever imports.
            warnings.simplefilter("ignore", ResourceWarning)
            import pyautogui

        self._gui: Any = pyautogui
        display = display or os.environ.get("DISPLAY")
        self._display = display
        if display and sys.platform.startswith("linux"):
            _point_pyautogui_at(display)
        pyautogui.PAUSE = 0  # our own code decides when to wait
        # The fail-safe stays on: the person can abort by slamming the pointer into a corner.
        # The validator never sends the agent there.
        pyautogui.FAILSAFE = True
        # pyautogui on X11 sends '<' as shift + the first key whose keysym is 'less', which on
        # pc105 keymaps (the Debian and Ubuntu default, and Xvfb's) is the extra key beside
        # left shift, where shift gives '>' (pyautogui issues #198, #580). Shift+comma is '<'
        # on the US layout pyautogui assumes for all other shifted characters anyway.
        self._shifted: dict[str, str] = {"<": ","} if sys.platform.startswith("linux") else {}

    @contextlib.contextmanager
    def _releasing(self) -> Iterator[None]:
        # pyautogui checks the fail-safe corner before every call, releases included; with the
        # pointer in a corner (the person aborting) a held button would then never be released.
        saved = self._gui.FAILSAFE
        self._gui.FAILSAFE = False
        try:
            yield
        finally:
            self._gui.FAILSAFE = saved

    def move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)`` at once."""
        self._gui.moveTo(x, y)

    def button_down(self, button: Button) -> None:
        """Press a mouse button where the pointer is."""
        self._gui.mouseDown(button=button)

    def button_up(self, button: Button) -> None:
        """Release a mouse button, even with the pointer in a fail-safe corner."""
        with self._releasing():
            self._gui.mouseUp(button=button)

    def scroll(self, clicks: int, horizontal: bool) -> None:
        """Scroll ``clicks`` notches: positive is up or right."""
        if horizontal:
            self._gui.hscroll(clicks)
        else:
            self._gui.scroll(clicks)

    def key_down(self, key: str) -> None:
        """Press a canonical key (pyautogui silently ignores names it does not know)."""
        if key not in KEY_NAMES:
            raise UnknownKeyError(key)
        base = self._shifted.get(key)
        if base is None:
            self._gui.keyDown(key)
            return
        # The same dance pyautogui does for shifted characters: shift is only down while the
        # key goes down, so the press carries shift and nothing else stays held.
        self._gui.keyDown("shift")
        try:
            self._gui.keyDown(base)
        finally:
            with self._releasing():
                self._gui.keyUp("shift")

    def key_up(self, key: str) -> None:
        """Release a canonical key, even with the pointer in a fail-safe corner."""
        if key not in KEY_NAMES:
            raise UnknownKeyError(key)
        with self._releasing():
            self._gui.keyUp(self._shifted.get(key, key))

    def untypeable(self, text: str) -> str:
        """The characters neither pyautogui nor xdotool can type here ("" for none)."""
        missing = "".join(sorted({c for c in text if not self._gui.isValidKey(c)}))
        if missing and self._display and shutil.which("xdotool"):
            return ""  # xdotool types any character that has a keysym: all of Unicode
        return missing

    def write(self, text: str, interval: float = 0.0) -> None:
        """Type text; raises before typing anything if a character cannot be typed here.

        Text on the keyboard pyautogui knows (ASCII, newline, tab) goes through pyautogui; text
        with any other character (accents, CJK, symbols) goes whole through ``xdotool type``,
        which binds a spare keycode to each character's keysym for the moment it is typed
        (XTEST), whatever the layout.
        """
        missing = self.untypeable(text)
        if missing:
            raise ValueError(
                f"cannot type {missing!r} with this keyboard (xdotool, which types any "
                "character, is not installed); nothing was typed")
        if all(self._gui.isValidKey(c) for c in text):
            self._write_plain(text, interval)
        else:
            # The whole text, not only the characters pyautogui lacks: measured on xterm, a
            # character remapped right after pyautogui's own input was lost (the first of each
            # such run), while xdotool typing the whole line lost none.
            _xdotool_type(self._display or "", text, interval)

    def _write_plain(self, text: str, interval: float) -> None:
        try:
            for i, piece in enumerate(text.split("<") if self._shifted else [text]):
                if i:
                    self.key_down("<")
                    self.key_up("<")
                    if interval:
                        time.sleep(interval)
                if piece:
                    self._gui.write(piece, interval=interval)
        except BaseException:
            # pyautogui presses shift by itself for capitals and symbols.
            with contextlib.suppress(Exception), self._releasing():
                self._gui.keyUp("shift")
            raise


XDOTOOL_TIMEOUT_S = 5.0  # beyond the typing time itself


def _xdotool_type(display: str, text: str, interval: float) -> None:
    """Type ``text`` with xdotool; the text goes through stdin, never the arguments (``ps``)."""
    from deskpilot.grounding.xvfb import display_env

    delay_ms = max(1, round(interval * 1000))  # xdotool's own default is 12 ms
    try:
        done = subprocess.run(["xdotool", "type", "--delay", str(delay_ms), "--file", "-"],
                              input=text.encode("utf-8"), env=display_env(display),
                              capture_output=True, check=False,
                              timeout=XDOTOOL_TIMEOUT_S + len(text) * (delay_ms / 1000 + 0.01))
    except subprocess.TimeoutExpired:
        raise RuntimeError("xdotool did not finish typing in time") from None
    if done.returncode != 0:
        raise RuntimeError(f"xdotool could not type: "
                           f"{done.stderr.decode('utf-8', 'replace').strip()[:200]}")


class InjectedFailure(RuntimeError):
    """The failure a :class:`RecordingDevice` raises on request."""


class RecordingDevice:
    """A fake input device that records every call and what is held down.

    ``fail_at`` holds the 0-based indices of calls that raise ``error``; with ``fail_after`` the
    failing call takes effect first (a press that landed, then the connection broke).
    """

    def __init__(self, *, fail_at: Collection[int] = (), fail_after: bool = False,
                 error: Callable[[str], BaseException] = InjectedFailure,
                 position: tuple[int, int] = (640, 400)) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.keys_down: list[str] = []
        self.buttons_down: list[str] = []
        self.position = position
        self.intervals: list[float] = []  # of each write, in order
        self._fail_at = frozenset(fail_at)
        self._fail_after = fail_after
        self._error = error

    def _call(self, *call: Any) -> Callable[[], None]:
        index = len(self.calls)
        self.calls.append(call)
        failing = index in self._fail_at
        if failing and not self._fail_after:
            raise self._error(f"injected failure at call {index}: {call}")

        def done() -> None:
            if failing:
                raise self._error(f"injected failure at call {index}: {call}")

        return done

    def move(self, x: int, y: int) -> None:
        """Record a move and update the emulated pointer."""
        done = self._call("move", x, y)
        self.position = (x, y)
        done()

    def button_down(self, button: Button) -> None:
        """Record a button press."""
        done = self._call("button_down", button)
        if button not in self.buttons_down:
            self.buttons_down.append(button)
        done()

    def button_up(self, button: Button) -> None:
        """Record a button release (releasing a button that is up is allowed, as on X11)."""
        done = self._call("button_up", button)
        if button in self.buttons_down:
            self.buttons_down.remove(button)
        done()

    def scroll(self, clicks: int, horizontal: bool) -> None:
        """Record a scroll."""
        self._call("scroll", clicks, horizontal)()

    def key_down(self, key: str) -> None:
        """Record a key press."""
        done = self._call("key_down", key)
        if key not in self.keys_down:
            self.keys_down.append(key)
        done()

    def key_up(self, key: str) -> None:
        """Record a key release (releasing a key that is up is allowed, as on X11)."""
        done = self._call("key_up", key)
        if key in self.keys_down:
            self.keys_down.remove(key)
        done()

    def write(self, text: str, interval: float = 0.0) -> None:
        """Record typed text; the pause between its characters goes to ``intervals``."""
        self.intervals.append(interval)
        self._call("write", text)()


class _Held:
    """The keys and buttons one execution has pressed and not yet released, in press order."""

    def __init__(self, device: InputDevice) -> None:
        self._device = device
        self._held: list[tuple[str, str]] = []

    def is_down(self, key: str) -> bool:
        return ("key", key) in self._held

    def _forget(self, item: tuple[str, str]) -> None:
        for i in range(len(self._held) - 1, -1, -1):
            if self._held[i] == item:
                del self._held[i]
                return

    # Remember before pressing: a press that raised may still have reached the server.
    # Forget only after a release returned: a release that raised is tried again at the end.
    def key_down(self, key: str) -> None:
        self._held.append(("key", key))
        self._device.key_down(key)

    def key_up(self, key: str) -> None:
        self._device.key_up(key)
        self._forget(("key", key))

    def button_down(self, button: Button) -> None:
        self._held.append(("button", button))
        self._device.button_down(button)

    def button_up(self, button: Button) -> None:
        self._device.button_up(button)
        self._forget(("button", button))

    def release_all(self) -> None:
        """Release everything still held, newest first; one failed release stops no other."""
        if not self._held:
            return
        log.warning("releasing input left held by an interrupted action: %s",
                    ", ".join(name for _, name in self._held))
        pending: BaseException | None = None
        while self._held:
            kind, name = self._held.pop()
            try:
                if kind == "key":
                    self._device.key_up(name)
                else:
                    self._device.button_up(name)  # type: ignore[arg-type]
            except BaseException as exc:
                log.exception("could not release %s %r", kind, name)
                # An interrupt (Ctrl-C) must not be swallowed, but only after the other
                # releases had their turn.
                if pending is None and not isinstance(exc, Exception):
                    pending = exc
        if pending is not None:
            raise pending


def _points(resolved: Resolved, n: int) -> tuple[Point, ...]:
    if len(resolved.points) != n:
        name = type(resolved.action).__name__.lower()
        raise ValueError(f"{name} needs {n} screen point(s), got {len(resolved.points)}")
    return resolved.points


def _checked_keys(keys: tuple[str, ...], field: str) -> tuple[str, ...]:
    if not keys:
        raise ValueError(f"resolved action has no {field}")
    for key in keys:
        if key not in KEY_NAMES:
            raise UnknownKeyError(key)
    return keys


def drag_path(start: Point, end: Point, steps: int = DRAG_STEPS) -> list[Point]:
    """The intermediate pointer positions of a drag, ending exactly on ``end``."""
    dx, dy = end.x - start.x, end.y - start.y
    return [Point(start.x + round(dx * i / steps), start.y + round(dy * i / steps))
            for i in range(1, steps + 1)]


def _press_chord(held: _Held, keys: tuple[str, ...]) -> None:
    # Keys already held (by a Hold) are not pressed again: a second press and its release
    # would let go of the held key early.
    fresh = [k for k in keys if not held.is_down(k)]
    for key in fresh:
        held.key_down(key)
    for key in reversed(fresh):
        held.key_up(key)


def _stop_requested(should_stop: Callable[[], bool] | None) -> bool:
    return should_stop is not None and should_stop()


@dataclass(frozen=True, slots=True)
class _Run:
    """What one execution works with."""

    device: InputDevice
    held: _Held
    sleep: Callable[[float], None]
    type_chunk: int
    should_stop: Callable[[], bool] | None
    type_interval: float = 0.0


def _click(run: _Run, p: Point, button: Button, clicks: int) -> None:
    run.device.move(p.x, p.y)
    for _ in range(clicks):
        run.held.button_down(button)
        run.held.button_up(button)


def _drag(run: _Run, start: Point, end: Point) -> None:
    run.device.move(start.x, start.y)
    run.held.button_down("left")
    run.sleep(DRAG_SETTLE_S)
    path = drag_path(start, end)
    for i, p in enumerate(path):
        # The kill hotkey must end a drag at once; execute's finally lets go of the button.
        if _stop_requested(run.should_stop):
            raise Interrupted(f"stopped the drag after {i} of {len(path)} moves")
        run.device.move(p.x, p.y)
        run.sleep(DRAG_STEP_S)
    run.held.button_up("left")


def _type(run: _Run, text: str) -> None:
    # pyautogui presses Enter for both '\r' and '\n', so a CRLF would press it twice.
    text = text.replace("\r\n", "\n")
    missing = untypeable(run.device, text)
    if missing:  # the whole text, before its first character: never half of it
        raise ValueError(f"cannot type {missing!r} with this keyboard; nothing was typed")
    for start in range(0, len(text), run.type_chunk):
        if start and _stop_requested(run.should_stop):
            raise Interrupted(f"stopped after typing {start} of {len(text)} characters")
        if run.type_interval:
            run.device.write(text[start:start + run.type_chunk], run.type_interval)
        else:
            run.device.write(text[start:start + run.type_chunk])


def _hold(run: _Run, hold: tuple[str, ...], keys: tuple[str, ...], presses: int) -> None:
    for key in hold:
        run.held.key_down(key)
    for i in range(presses):
        if i and _stop_requested(run.should_stop):
            raise Interrupted(f"stopped after {i} of {presses} presses")
        _press_chord(run.held, keys)
    for key in reversed(hold):
        run.held.key_up(key)


def _wait(run: _Run, seconds: float) -> None:
    if run.should_stop is None:
        run.sleep(seconds)
        return
    left = seconds
    while left > 0:
        if run.should_stop():
            raise Interrupted(f"stopped with {left:.2f} s of a {seconds:.2f} s wait left")
        step = min(WAIT_SLICE_S, left)
        run.sleep(step)
        left -= step


def _dispatch(resolved: Resolved, run: _Run) -> None:
    match resolved.action:
        case Click(button=button, clicks=clicks):
            (p,) = _points(resolved, 1)
            _click(run, p, button, clicks)
        case Move():
            (p,) = _points(resolved, 1)
            run.device.move(p.x, p.y)
        case Drag():
            _drag(run, *_points(resolved, 2))
        case Scroll(direction=direction, amount=amount):
            (p,) = _points(resolved, 1)
            run.device.move(p.x, p.y)
            sign = 1 if direction in ("up", "right") else -1
            run.device.scroll(sign * amount, horizontal=direction in ("left", "right"))
        case Type(text=text):
            _type(run, text)
        case Key():
            _press_chord(run.held, _checked_keys(resolved.keys, "keys"))
        case Hold(presses=presses):
            _hold(run, _checked_keys(resolved.hold, "hold keys"),
                  _checked_keys(resolved.keys, "keys"), presses)
        case Wait(seconds=seconds):
            _wait(run, seconds)
        case Done() | Fail() | AskUser():
            pass  # control actions: the loop acts on them, the devices do not
        case other:
            raise TypeError(f"the executor does not know action {type(other).__name__}")


def execute(resolved: Resolved, device: InputDevice, *,
            sleep: Callable[[float], None] = time.sleep, type_chunk: int = 32,
            should_stop: Callable[[], bool] | None = None, type_interval: float = 0.0) -> None:
    """Perform one resolved action on the device; nothing it pressed stays held afterwards.

    ``should_stop`` is polled between typed chunks, hold presses, wait slices and drag moves;
    when it returns True the action ends with :class:`Interrupted`. ``type_interval`` is the
    pause between typed characters (seconds), for applications that drop keys sent at once.
    """
    if type_chunk < 1:
        raise ValueError(f"type_chunk must be at least 1, got {type_chunk}")
    held = _Held(device)
    log.debug("executing %s", type(resolved.action).__name__)
    try:
        _dispatch(resolved, _Run(device, held, sleep, type_chunk, should_stop, type_interval))
    finally:
        held.release_all()


def release_all(device: InputDevice, keys: Iterable[str] = MODIFIERS,
                buttons: Iterable[Button] = BUTTONS) -> tuple[str, ...]:
    """Best-effort panic release of buttons then keys; returns the names that failed."""
    failed: list[str] = []
    calls: list[tuple[str, Callable[[], None]]] = [
        *((b, functools.partial(device.button_up, b)) for b in buttons),
        *((k, functools.partial(device.key_up, k)) for k in sorted(keys))]
    for name, release in calls:
        try:
            release()
        except Exception as exc:
            failed.append(name)
            if len(failed) == 1:  # one report: when the display is gone, every call fails
                log.warning("panic release of %r failed (%s: %s)", name, type(exc).__name__,
                            exc)
    if len(failed) > 1:
        log.warning("panic release failed for %d keys and buttons", len(failed))
    return tuple(failed)
