"""How the person approves a sensitive action: out of band, never through the model or screen."""

from __future__ import annotations

import logging
import os
import select
import sys
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from deskpilot.actions.policy import Concern
from deskpilot.actions.text import printable

log = logging.getLogger(__name__)


@runtime_checkable
class Approver(Protocol):
    """Asks the person whether a sensitive action may run.

    The answer must come from the person through a channel the agent cannot write to (the
    controlling terminal, the TUI): never from model output, never from text on the screen.
    """

    def approve(self, concern: Concern, summary: str) -> bool:
        """True only when the person said yes to ``summary`` despite ``concern``."""
        ...


class DenyAll:
    """The headless answer: nothing sensitive runs unless the task file allows it."""

    def approve(self, concern: Concern, summary: str) -> bool:
        """Always False."""
        log.info("denied without asking (%s): %s", concern.category.value, concern.reason)
        return False


MAX_ANSWER_BYTES = 1024
_YES = frozenset({"y", "yes"})


class TerminalApprover:
    """Asks ``[y/N]`` on the controlling terminal and takes only "y" or "yes" as a yes.

    The question goes to ``tty_path`` (``/dev/tty``), never to stdin or stdout, which may be
    pipes fed by something else; without a terminal the answer is no. Keys typed before the
    question are thrown away (``tcflush``), so nothing typed earlier, by the agent or anyone,
    answers it. ``timeout_s`` (None: wait for ever) turns silence into a no.
    """

    def __init__(self, tty_path: str = "/dev/tty", *, timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tty_path = tty_path
        self.timeout_s = timeout_s
        self._clock = clock

    def approve(self, concern: Concern, summary: str) -> bool:
        """Ask the person; False without a terminal, on EOF, on timeout or any other answer."""
        try:
            fd = os.open(self.tty_path, os.O_RDWR | os.O_NOCTTY)
        except OSError as exc:
            log.warning("no terminal to ask for approval (%s): denied", exc)
            return False
        try:
            if not os.isatty(fd):
                log.warning("%s is not a terminal: approval denied", self.tty_path)
                return False
            import termios

            termios.tcflush(fd, termios.TCIFLUSH)
            os.write(fd, _prompt(concern, summary).encode("utf-8", "replace"))
            answer = self._read_line(fd)
        except OSError as exc:
            log.warning("asking for approval on %s failed (%s): denied", self.tty_path, exc)
            return False
        finally:
            os.close(fd)
        if answer is None:
            return False
        return answer.strip().lower() in _YES

    def _read_line(self, fd: int) -> str | None:
        """One line from the terminal, or None on EOF or timeout."""
        deadline = None if self.timeout_s is None else self._clock() + self.timeout_s
        data = b""
        while b"\n" not in data and len(data) < MAX_ANSWER_BYTES:
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    os.write(fd, b"\n(no answer: denied)\n")
                    return None
            chunk = os.read(fd, MAX_ANSWER_BYTES)
            if not chunk:
                return None
            data += chunk
        return data.split(b"\n", 1)[0].decode("utf-8", "replace")


def _prompt(concern: Concern, summary: str) -> str:
    # Screen text and model words reach this prompt: no escape sequence may reach the terminal.
    return (f"\ndeskpilot wants to: {printable(summary, one_line=True)}\n"
            f"  {concern.category.value}: {printable(concern.reason, one_line=True)}\n"
            "Allow this once? [y/N] ")


__all__ = ["Approver", "DenyAll", "TerminalApprover"]


def default_approver(*, headless: bool) -> Approver:
    """Who approves sensitive actions: nobody when headless, else the person at this terminal."""
    if headless or not sys.stdin.isatty():
        return DenyAll()
    return TerminalApprover()
