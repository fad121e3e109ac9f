"""Notice the person's own mouse and keyboard input, so the agent stops acting at once.

pynput's listeners also report the events the agent injects itself (pyautogui goes through the
same XTest path a person's devices do not, but the listener cannot tell them apart). So input is
ignored while the agent is acting, and for a short grace period after, and anything else counts
as the person's. The agent spends nearly all its time waiting for the model, so that is when a
person's input lands; a movement made in the same few milliseconds as an injected one is missed.

Two things are exempt from that rule. The kill hotkey (Ctrl+Alt+K unless told otherwise) is
honoured even while the agent acts: it exists to end a run in the middle of a drag. And once the
person has control, what they do is kept as short lines in the agent's own action space
("click(left, 200, 210)", "typed 6 keys") so the agent can be told what changed meanwhile; keys
are only counted, never named, because the person may be typing a password.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, get_args

log = logging.getLogger(__name__)

GRACE_S = 0.25  # injected events can reach us this long after the call returned
DEFAULT_KILL_HOTKEY = "<ctrl>+<alt>+k"  # pynput's HotKey syntax
HOTKEY_SYNTAX = ("keys joined by '+', names in angle brackets and single characters bare, "
                 f"e.g. {DEFAULT_KILL_HOTKEY}")
# A kill hotkey without one of these would fire while the person, or the agent, just types.
_KILL_MODIFIERS = frozenset({"<ctrl>", "<alt>", "<cmd>"})
_LABELS = {"cmd": "Super", "alt_gr": "AltGr", "esc": "Esc"}
MAX_HANDED_BACK = 20  # lines kept of what the person did; the newest matter most

EventKind = Literal["move", "press", "release", "scroll", "key"]
_READY, _KILL = "ready", "kill"  # the listener's control lines, beside the events


def _parts(text: str) -> list[str]:
    """Split like pynput's ``HotKey.parse``: a '+' right after a separator is the key '+'."""
    parts, start = [], 0
    for i, c in enumerate(text):
        if c == "+" and i != start:
            parts.append(text[start:i])
            start = i + 1
    if start == len(text):
        raise ValueError(f"hotkey {text!r} is empty or ends with '+'; expected {HOTKEY_SYNTAX}")
    return [*parts, text[start:]]


def parse_hotkey(text: str) -> str:
    """Check a hotkey given by the person; returns it in the form the listener is given.

    The shape is checked here without a display; the key names by pynput itself, which on X11
    can only be imported with a display. Without one the watch cannot start either, and says so.
    """
    hotkey = text.strip().lower()
    parts = _parts(hotkey)
    for part in parts:
        if len(part) != 1 and not (len(part) > 2 and part[0] == "<" and part[-1] == ">"):
            raise ValueError(f"hotkey {text!r}: {part!r} is not a key; expected {HOTKEY_SYNTAX}")
    if not _KILL_MODIFIERS & set(parts):
        raise ValueError(f"hotkey {text!r} needs <ctrl>, <alt> or <cmd>, or typing would set it "
                         f"off; expected {HOTKEY_SYNTAX}")
    try:
        from pynput import keyboard
    except ImportError:
        return hotkey
    try:
        keyboard.HotKey.parse(hotkey)
    except ValueError as exc:
        raise ValueError(f"hotkey {text!r}: unknown key or a key twice ({exc}); expected "
                         f"{HOTKEY_SYNTAX}") from exc
    return hotkey


def describe_hotkey(text: str) -> str:
    """A label for the interface: ``<ctrl>+<alt>+k`` is "Ctrl+Alt+K"."""
    labels = []
    for part in _parts(text.strip().lower()):
        name = part[1:-1] if len(part) > 2 else part
        labels.append(_LABELS.get(name, name.replace("_", " ").title()))
    return "+".join(labels)


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One input event, as the listener reports it: one JSON object per line."""

    kind: EventKind
    x: int = 0
    y: int = 0
    button: str = ""
    dx: int = 0
    dy: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputEvent:
        """The event a decoded listener line stands for; ValueError when it is none."""
        if data.get("kind") not in get_args(EventKind):
            raise ValueError(f"not an input event: {data!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not an input event: {data!r}") from exc

    def describe(self) -> str:
        """A human phrase for the first thing the person did."""
        match self.kind:
            case "move":
                return f"the pointer moved to ({self.x}, {self.y})"
            case "press":
                return f"a {self.button} click at ({self.x}, {self.y})"
            case "release":
                return f"a {self.button} button released at ({self.x}, {self.y})"
            case "scroll":
                return "a scroll"
            case _:
                return "a key press"


class _HandedBack:
    """What the person did while in control, as action-like lines, most collapsed."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._last = ""  # what the last line counts: "move", "scroll:<dir>", "key" or ""
        self._count = 0
        self._pressed: dict[str, tuple[int, int]] = {}

    def _put(self, what: str, line: str, count: int = 0) -> None:
        if what and what == self._last:
            self.lines[-1] = line
        else:
            self.lines.append(line)
        self._last, self._count = what, count

    def add(self, e: InputEvent) -> None:
        match e.kind:
            case "move" if not self._pressed:  # while pressed, the release says where it ended
                self._put("move", f"move({e.x}, {e.y})")
            case "press":
                if self._last == "move":  # the click line says where the pointer went
                    self.lines.pop()
                    self._last = ""
                self._pressed[e.button] = (e.x, e.y)
            case "release" if e.button in self._pressed:
                x, y = self._pressed.pop(e.button)
                self._put("", f"click({e.button}, {x}, {y})" if (x, y) == (e.x, e.y)
                          else f"drag({e.button}, {x}, {y}, {e.x}, {e.y})")
            case "scroll":
                way = ("up" if e.dy > 0 else "down") if e.dy else ("right" if e.dx > 0 else "left")
                n = (self._count if self._last == f"scroll:{way}" else 0) + abs(e.dy or e.dx)
                self._put(f"scroll:{way}", f"scroll({way}, {n}, {e.x}, {e.y})", n)
            case "key":
                n = (self._count if self._last == "key" else 0) + 1
                self._put("key", f"typed {n} key{'s' if n > 1 else ''}", n)

    def result(self) -> list[str]:
        lines = self.lines + [f"press({b}, {x}, {y})" for b, (x, y) in self._pressed.items()]
        if len(lines) > MAX_HANDED_BACK:
            lines = [f"... {len(lines) - MAX_HANDED_BACK} earlier",
                     *lines[-MAX_HANDED_BACK:]]
        return lines


class TakeoverWatch:
    """Listens for input that is not the agent's, and for the kill hotkey.

    :meth:`taken` says what the person did first, :meth:`reset` what they did in all, and
    :meth:`killed` whether the kill hotkey was pressed. ``on_kill`` is called from the reader
    thread (not the caller's) as soon as the hotkey is seen; keep it short and thread-safe.
    The hotkey's own key presses count as a takeover too when the agent is not acting; that is
    harmless, the kill wins. The agent pressing the hotkey itself would also stop the run.

    With ``keys=False`` key presses are not a takeover (the kill hotkey still is): the
    interface is driven from the keyboard, so there only the mouse takes over.
    """

    def __init__(self, *, kill_hotkey: str | None = DEFAULT_KILL_HOTKEY,
                 on_kill: Callable[[], None] | None = None, grace_s: float = GRACE_S,
                 clock: Callable[[], float] = time.monotonic, keys: bool = True) -> None:
        self._keys = keys
        self._kill_hotkey = None if kill_hotkey is None else parse_hotkey(kill_hotkey)
        self._on_kill = on_kill
        self._grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._acting = 0
        self._quiet_until = 0.0
        self._seen: str | None = None
        self._did = _HandedBack()
        self._killed = False
        self._ready = threading.Event()
        self._live = False
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, *, timeout_s: float = 10.0) -> TakeoverWatch:
        """Start listening; returns once the listeners are live.

        The pynput listeners run in a child process: stopping an X11 listener from another
        thread races python-xlib on one connection (seen in the tests as a connection the
        server closed), and a process can simply be ended.
        """
        argv = [sys.executable, "-P", "-m", "deskpilot.agent.takeover"]
        self._proc = subprocess.Popen(
            argv if self._kill_hotkey is None else [*argv, self._kill_hotkey],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name="deskpilot-takeover",
                                        daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout_s) or not self._live:
            self.stop()
            raise RuntimeError("the input listener did not start (is pynput able to reach "
                               "the X display?)")
        return self

    def stop(self) -> None:
        """End the listener process and its reader."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def _read(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        try:
            for line in iter(proc.stdout.readline, ""):
                self.feed(line)
        finally:
            self._ready.set()  # a listener that died before it was ready: start() says so

    def __enter__(self) -> TakeoverWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def acting(self) -> Iterator[None]:
        """Mark the agent's own input: events until shortly after this block are ignored."""
        with self._lock:
            self._acting += 1
        try:
            yield
        finally:
            with self._lock:
                self._acting -= 1
                self._quiet_until = self._clock() + self._grace_s

    def feed(self, line: str) -> None:
        """Take one line of the listener's output (the reader thread calls this; tests too)."""
        if not line.strip():
            return
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError(line)
            kind = data.get("kind")
            if kind == _READY:
                self._live = True
                self._ready.set()
            elif kind == _KILL:
                self._kill()
            else:
                self._notice(InputEvent.from_json(data))
        except ValueError:
            log.warning("ignored a line from the input listener: %.80r", line)

    def _kill(self) -> None:
        with self._lock:
            self._killed = True
        log.warning("the kill hotkey was pressed: stopping the agent")
        if self._on_kill is not None:
            try:
                self._on_kill()
            except Exception:  # the reader must go on: a later takeover still needs it
                log.exception("on_kill failed")

    def _notice(self, event: InputEvent) -> None:
        with self._lock:
            if self._acting or self._clock() < self._quiet_until:
                return
            if event.kind == "key" and not self._keys:
                return
            first = self._seen is None
            if first:
                self._seen = event.describe()
            self._did.add(event)
        if first:
            log.warning("the person took over: %s", event.describe())

    def taken(self) -> str | None:
        """What the person did first since the last :meth:`reset`, or None."""
        with self._lock:
            return self._seen

    def reset(self) -> list[str]:
        """The person handed control back: forget the takeover, return what they did.

        Lines like "move(17, 23)", "click(left, 200, 210)", "drag(left, ...)",
        "scroll(down, 3, x, y)" and "typed 6 keys", oldest first, at most
        :data:`MAX_HANDED_BACK` of them. A kill is not forgotten: :meth:`killed` stays True.
        """
        with self._lock:
            self._seen = None
            did, self._did = self._did, _HandedBack()
        return did.result()

    def killed(self) -> bool:
        """Whether the kill hotkey was pressed since :meth:`start` (fit for ``should_stop``)."""
        with self._lock:
            return self._killed


def _listen(kill_hotkey: str | None) -> None:
    """The child process: one JSON line per input event on stdout, until it is ended."""
    from pynput import keyboard, mouse

    lock = threading.Lock()  # two listener threads print; print() is not one write

    def say(kind: str, **fields: object) -> None:
        with lock:
            sys.stdout.write(json.dumps({"kind": kind, **fields}) + "\n")
            sys.stdout.flush()

    hotkey = None if kill_hotkey is None else keyboard.HotKey(
        keyboard.HotKey.parse(kill_hotkey), lambda: say(_KILL))

    def on_key(key: keyboard.Key | keyboard.KeyCode | None, pressed: bool) -> None:
        if pressed:
            say("key")  # never which key: it may be part of a password
        if hotkey is not None and key is not None:
            (hotkey.press if pressed else hotkey.release)(board.canonical(key))

    board = keyboard.Listener(on_press=lambda key: on_key(key, True),
                              on_release=lambda key: on_key(key, False))
    pointer = mouse.Listener(
        on_move=lambda x, y: say("move", x=x, y=y),
        on_click=lambda x, y, button, pressed: say(
            "press" if pressed else "release", button=button.name, x=x, y=y),
        on_scroll=lambda x, y, dx, dy: say("scroll", x=x, y=y, dx=dx, dy=dy))
    for listener in (board, pointer):
        listener.start()
    for listener in (board, pointer):
        listener.wait()
    say(_READY)
    for listener in (board, pointer):
        listener.join()


if __name__ == "__main__":
    _listen(sys.argv[1] if len(sys.argv) > 1 else None)
