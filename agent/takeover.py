"""Notice the person's own mouse and keyboard input, so the agent stops acting at once.

pynput's listeners also report the events the agent injects itself (pyautogui goes through the
same XTest path a person's devices do not, but the listener cannot tell them apart). So input is
ignored while the agent is acting, and for a short grace period after, and anything else counts
as the person's. The agent spends nearly all its time waiting for the model, so that is when a
person's input lands; a movement made in the same few milliseconds as an injected one is missed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

GRACE_S = 0.25  # injected events can reach us this long after the call returned
READY = "ready"


class TakeoverWatch:
    """Listens for input that is not the agent's; :meth:`taken` says what it saw first."""

    def __init__(self, *, grace_s: float = GRACE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._acting = 0
        self._quiet_until = 0.0
        self._seen: str | None = None
        self._ready = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, *, timeout_s: float = 10.0) -> TakeoverWatch:
        """Start listening; returns once the listeners are live.

        The pynput listeners run in a child process: stopping an X11 listener from another
        thread races python-xlib on one connection (seen in the tests as a connection the
        server closed), and a process can simply be ended.
        """
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "agent.takeover"], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name="deskpilot-takeover",
                                        daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout_s):
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
        for line in iter(proc.stdout.readline, ""):
            if line.strip() == READY:
                self._ready.set()
            elif line.strip():
                self.notice(line.strip())

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

    def notice(self, what: str) -> None:
        """Called by the listeners (and by tests) for every input event."""
        with self._lock:
            if self._acting or self._clock() < self._quiet_until or self._seen is not None:
                return
            self._seen = what
        log.warning("the person took over: %s", what)

    def taken(self) -> str | None:
        """What the person did first since the last :meth:`reset`, or None."""
        with self._lock:
            return self._seen

    def reset(self) -> None:
        """Forget it (the person handed control back)."""
        with self._lock:
            self._seen = None


def _listen() -> None:
    """The child process: one line per input event on stdout, until it is ended."""
    from pynput import keyboard, mouse

    def say(text: str) -> None:
        print(text, flush=True)

    listeners = [
        mouse.Listener(on_move=lambda x, y: say(f"the pointer moved to ({x}, {y})"),
                       on_click=lambda x, y, button, pressed: say(
                           f"a {button.name} click at ({x}, {y})"),
                       on_scroll=lambda x, y, dx, dy: say("a scroll")),
        keyboard.Listener(on_press=lambda key: say("a key press")),
    ]
    for listener in listeners:
        listener.start()
    for listener in listeners:
        listener.wait()
    say(READY)
    for listener in listeners:
        listener.join()


if __name__ == "__main__":
    _listen()
