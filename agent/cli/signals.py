"""Termination signals as interrupts, so that a killed run still lets go of the keyboard.

SIGINT (Ctrl+C) already raises :class:`KeyboardInterrupt` in the main thread, which unwinds the
stack through every ``finally`` block: the executor's among them, which releases each key and
button it pressed. SIGTERM (``kill``, systemd, a CI runner cancelling a job, ``timeout``) and
SIGHUP (the terminal closing) do not: their default action ends the process at once, in the
kernel, without running any Python code. A key or button pressed through XTest is then left
down on the X server, which does not release it when the client that pressed it disconnects:
the person's next keystrokes on that desktop become shortcuts (a held shift or ctrl), and every
pointer motion a drag. :func:`terminate_as_interrupt` makes those signals behave like SIGINT
for the duration of a run.

Python runs a signal handler in the main thread between bytecodes, or when a blocking system
call (``sleep``, a socket read) is interrupted, so an interrupt lands in the middle of whatever
the main thread was doing. Two places must not be cut that way, and inside the context the
interrupt is held back until the main thread has left them (SIGINT included):

- python-xlib: an exception raised while it waits for a reply leaves the connection's
  request/reply bookkeeping out of step, and the next round trip on it (the release of the
  held key, in the executor's cleanup) waits forever. Measured on Xvfb without the hold-back:
  one SIGTERM or SIGINT in five to ten sent mid-typing hung the process that way
  (``tests/test_signals_x11.py`` now sends twelve).
- pyautogui: it presses and releases each typed character with no ``try``/``finally`` between
  the two, so an exception in between leaves that character's key down, and the executor never
  learns about it (it only tracks its own presses).

A held-back interrupt is sent again to the main thread every :data:`RETRY_S` (a real signal,
so that it also wakes a sleep the main thread went into after leaving the library), and raised
at the latest after :data:`MAX_DEFER_S`: an X call that never returns (a server that stopped
answering) must not make the process unkillable by SIGTERM. One that is still held back when
the block ends is raised as the block ends. A resend already on its way as the block ends
reaches the handler put back (for SIGTERM, the default: the process ends, after the block has
released everything it pressed).

A native call that never returns to the interpreter (a long llama.cpp decode) delays every
signal handler anyway, until it does.
"""

from __future__ import annotations

import _thread
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

# SIGHUP does not exist on Windows; there SIGTERM is only ever raised by the process itself.
TERMINATING: tuple[signal.Signals, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
    if s is not None)
# Modules whose calls an interrupt must not cut in half (see the module docstring).
UNINTERRUPTIBLE: tuple[str, ...] = ("Xlib", "pyautogui")
RETRY_S = 0.005
MAX_DEFER_S = 2.0

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class TerminatedBySignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; raised like Ctrl+C's interrupt, so it unwinds the same way.

    A subclass of :class:`KeyboardInterrupt`, so every ``except KeyboardInterrupt`` and every
    cleanup written for Ctrl+C applies; ``signum`` lets a caller report it or choose an exit code
    (the shell convention is ``128 + signum``).
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        super().__init__(f"terminated by {name}")


def _inside(frame: FrameType | None, modules: tuple[str, ...]) -> str | None:
    """The first module of ``modules`` (or a submodule) with a frame on the stack, if any."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        for module in modules:
            if name == module or name.startswith(module + "."):
                return module
        frame = frame.f_back
    return None


@dataclass
class _Pending:
    """An interrupt that arrived inside an uninterruptible call and waits to be delivered."""

    signum: int | None = None
    since: float = 0.0
    timer: threading.Timer | None = field(default=None, repr=False)


class _Interrupter:
    """The signal handler installed by :func:`terminate_as_interrupt`."""

    def __init__(self, modules: tuple[str, ...], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._modules = modules
        self._clock = clock
        self._lock = threading.RLock()  # the handler may run again inside itself
        self.pending = _Pending()
        self.active = True
        self._main = threading.main_thread().ident or 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        now = self._clock()
        _note_stop(signum)
        with self._lock:
            if not self.active:
                # The block is over and the handlers are being put back: raising here would
                # cut that short. The signal is raised once they are back.
                self.pending.signum = self.pending.signum or signum
                return
            if self.pending.signum is None:
                self.pending = _Pending(signum, now)
            elif self.pending.signum == signal.SIGINT:
                self.pending.signum = signum  # a termination signal outranks Ctrl+C
            inside = _inside(frame, self._modules)
            if inside is not None and now - self.pending.since < MAX_DEFER_S:
                if self.pending.timer is None:
                    log.debug("signal %d arrived inside %s; delivering it after the call",
                              signum, inside)
                    self.pending.timer = threading.Timer(RETRY_S, self._redeliver)
                    self.pending.timer.daemon = True
                    self.pending.timer.start()
                return
            if inside is not None:
                log.warning("signal %d held back for %.1f s inside %s; interrupting it anyway",
                            signum, now - self.pending.since, inside)
            delivered = self.pending.signum or signum
            self._clear()
        raise _interrupt(delivered)

    def _redeliver(self) -> None:
        with self._lock:
            self.pending.timer = None
            signum = self.pending.signum
            if signum is None or not self.active:
                return
            # A real signal to the main thread, not interrupt_main(): it also cuts short a
            # blocking call the main thread went into after leaving the library (a sleep).
            if hasattr(signal, "pthread_kill"):
                signal.pthread_kill(self._main, signum)
            else:
                _thread.interrupt_main(signal.Signals(signum))

    def _clear(self) -> None:
        if self.pending.timer is not None:
            self.pending.timer.cancel()
        self.pending = _Pending()

    def close(self) -> None:
        """Stop redelivering: from now on a signal is only noted, for :meth:`take`."""
        with self._lock:
            self.active = False
            if self.pending.timer is not None:
                self.pending.timer.cancel()
                self.pending.timer = None

    def take(self) -> int | None:
        """The signal still waiting to be delivered, if any, forgetting it."""
        with self._lock:
            signum = self.pending.signum
            self._clear()
        return signum


_first_signal: list[int] = []  # the signal that first asked this process to stop


def _note_stop(signum: int) -> None:
    if not _first_signal:
        _first_signal.append(signum)


def stopping_signal() -> int | None:
    """The first SIGINT, SIGTERM or SIGHUP that reached :func:`terminate_as_interrupt`'s
    handler in this process, if any: the command line's exit status is 128 + its number
    (``agent/cli/errors.py``), whichever mode caught the interrupt."""
    return _first_signal[0] if _first_signal else None


def _interrupt(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else TerminatedBySignal(signum)


@contextmanager
def terminate_as_interrupt(signals: tuple[signal.Signals, ...] = TERMINATING,
                           *, uninterruptible: tuple[str, ...] = UNINTERRUPTIBLE
                           ) -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`TerminatedBySignal` in the main thread.

    SIGINT keeps raising a plain :class:`KeyboardInterrupt`, but through the same handler, so
    no interrupt of the three cuts a call into ``uninterruptible`` modules in half: it is
    delivered as soon as the call returns (see the module docstring). SIGINT is only taken over
    while it has Python's default handler; a custom one is left alone.

    The handlers found on entry are put back on exit, whichever way the block is left; an
    interrupt still held back when the block ends is raised then, in place of an exception
    that ended the block meanwhile (unless that is an interrupt already). Outside the main
    thread (where Python cannot install signal handlers) this does nothing. A signal the process
    ignores on entry (``SIG_IGN``, as ``nohup`` sets for SIGHUP) stays ignored.

    Every delivery raises, like SIGINT does: a second SIGTERM that lands while the first one's
    ``finally`` blocks run interrupts them too. The executor's release loop tries every release
    before re-raising such an interrupt, and a supervisor that sends a second signal usually
    follows it with SIGKILL anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _first_signal.clear()  # a new run: what stopped an earlier one in this process is past
    wanted = list(signals)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler \
            and signal.SIGINT not in wanted:
        wanted.append(signal.SIGINT)
    handler = _Interrupter(uninterruptible)
    previous: list[tuple[signal.Signals, Handler]] = []
    error: BaseException | None = None
    try:
        for sig in wanted:
            if signal.getsignal(sig) == signal.SIG_IGN:
                continue
            previous.append((sig, signal.signal(sig, handler)))
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        handler.close()
        for sig, old in reversed(previous):
            # None: the handler was installed from C, not from Python; the default is what a
            # Python program gets there.
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        held_back = handler.take()
        # A held-back signal is not lost to an error that ended the block meanwhile: the
        # interrupt replaces it (the error stays attached as its __context__).
        if held_back is not None and not isinstance(error, KeyboardInterrupt | GeneratorExit):
            raise _interrupt(held_back)


__all__ = ["MAX_DEFER_S", "RETRY_S", "TERMINATING", "UNINTERRUPTIBLE", "TerminatedBySignal",
           "stopping_signal", "terminate_as_interrupt"]
