"""The person's controls over a running agent: pause, step once, approve each, stop, hint.

The loop runs in a worker thread and calls the :class:`Supervisor` at fixed points: before it
thinks, when it has a new screenshot, for every piece of model text, and before it acts. The
interface (the TUI) flips switches on :class:`Controls` from its own thread; nothing here knows
about the interface, so the same object is driven by tests without a terminal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

Points = tuple[tuple[int, int], ...]  # screen points, as in StepRecord.points

# How often a blocked wait looks at the stop switch (a stop also wakes it at once).
_POLL_S = 0.2


class Verdict(StrEnum):
    """What the person decided about the next action."""

    GO = "go"
    DENY = "deny"
    STOP = "stop"


class StopRequested(KeyboardInterrupt):
    """Raised inside a model call when the person stopped the run; it unwinds like Ctrl+C."""


class Supervisor(Protocol):
    """What the loop asks of whoever watches it. Every method is called from the loop's thread."""

    def before_think(self, index: int) -> bool:
        """Block while paused; False when the run must stop."""
        ...

    def observed(self, index: int, rgb: np.ndarray) -> None:
        """The screenshot step ``index`` is about to think about."""
        ...

    def streamed(self, text: str) -> None:
        """A piece of model output as it is generated (may raise :class:`StopRequested`)."""
        ...

    def take_hint(self) -> str | None:
        """A hint the person typed since the last step, once."""
        ...

    def decided(self, index: int, action: dict[str, Any], points: Points) -> None:
        """The model's next action (as in the step record), before any check or approval."""
        ...

    def before_act(self, index: int, summary: str) -> Verdict:
        """Whether the decided action may run now (blocks in step-once and approve-each mode)."""
        ...

    def taken_over(self, what: str) -> bool:
        """The person took the mouse or keyboard: block until handed back; False to stop."""
        ...

    def stopping(self) -> bool:
        """True once a stop was asked for (polled while an action runs)."""
        ...

    @property
    def stop_reason(self) -> str | None:
        """Why the run is stopping, or None."""
        ...


class Controls:
    """Thread-safe switches the interface flips and the loop obeys.

    ``ask`` puts an approve-each question to the person and returns True for yes; it is called
    from the loop's thread and may block. ``on_state`` hears about state changes (for a status
    line), ``on_observed`` gets each screenshot and ``on_text`` the model's text as it comes;
    they are called from whichever thread made the change.
    """

    def __init__(self, *, ask: Callable[[str], bool] | None = None) -> None:
        self.ask = ask
        self._lock = threading.Condition()
        self._paused = False
        self._step_once = False
        self._approve_each = False
        self._steps_granted = 0
        self._handed_back = False
        self._stop_reason: str | None = None
        self._hint: str | None = None
        self.on_observed: Callable[[int, np.ndarray], object] | None = None
        self.on_text: Callable[[str], object] | None = None
        self.on_state: Callable[[str], object] | None = None
        self.on_decided: Callable[[int, dict[str, Any], Points], object] | None = None
        self.waiting_for: str | None = None  # what the loop is blocked on, for the status line

    # -- the person's side ------------------------------------------------------------------

    def pause(self) -> None:
        """Hold the agent before its next think or act."""
        self._set(paused=True)

    def resume(self) -> None:
        """Let it go on (also hands control back after a takeover)."""
        self._set(paused=False, handed_back=True)

    def toggle_pause(self) -> bool:
        """Pause when running, resume when paused; returns the new paused state."""
        with self._lock:
            paused = not self._paused
        if paused:
            self.pause()
        else:
            self.resume()
        return paused

    def set_step_once(self, on: bool) -> None:
        """In step-once mode every action waits for :meth:`step`."""
        self._set(step_once=on)

    def set_approve_each(self, on: bool) -> None:
        """In approve-each mode every action is put to the person first."""
        self._set(approve_each=on)

    def step(self) -> None:
        """Let one action through in step-once mode (and resume if paused)."""
        with self._lock:
            self._steps_granted += 1
            self._paused = False
            self._lock.notify_all()
        self._notify(self.state())

    def stop(self, reason: str = "stopped by the person") -> None:
        """End the run at the next checkpoint, token or action slice; the first reason stays."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            self._lock.notify_all()
        log.info("stop requested: %s", reason)
        self._notify(self.state())

    def add_hint(self, text: str) -> None:
        """Add ``text`` to the next prompt (hints typed before it is sent are joined)."""
        text = " ".join(text.split())
        if not text:
            return
        with self._lock:
            self._hint = text if self._hint is None else f"{self._hint} {text}"

    @property
    def stop_reason(self) -> str | None:
        """Why the run is stopping, or None."""
        with self._lock:
            return self._stop_reason

    @property
    def paused(self) -> bool:
        """Whether the agent is held."""
        with self._lock:
            return self._paused

    @property
    def step_once(self) -> bool:
        """Whether every action waits for a key."""
        with self._lock:
            return self._step_once

    @property
    def approve_each(self) -> bool:
        """Whether every action is put to the person."""
        with self._lock:
            return self._approve_each

    def state(self) -> str:
        """A word for the status line."""
        with self._lock:
            if self._stop_reason is not None:
                return "stopping"
            if self.waiting_for is not None:
                return self.waiting_for
            return "paused" if self._paused else "running"

    # -- the loop's side (the Supervisor protocol) -------------------------------------------

    def before_think(self, index: int) -> bool:
        """Block while paused; False when the run must stop."""
        return self._wait_until(lambda: not self._paused, "paused")

    def observed(self, index: int, rgb: np.ndarray) -> None:
        """Pass the screenshot on to the interface."""
        if self.on_observed is not None:
            self.on_observed(index, rgb)

    def streamed(self, text: str) -> None:
        """Pass model text on; a stop lands here, mid-generation."""
        if self.stopping():
            raise StopRequested(self.stop_reason or "stopped")
        if self.on_text is not None:
            self.on_text(text)

    def decided(self, index: int, action: dict[str, Any], points: Points) -> None:
        """Pass the next action on, so the interface can mark where it will land."""
        if self.on_decided is not None:
            self.on_decided(index, action, points)

    def take_hint(self) -> str | None:
        """The pending hint, once."""
        with self._lock:
            hint, self._hint = self._hint, None
        return hint

    def before_act(self, index: int, summary: str) -> Verdict:
        """Wait for a step key (step-once), a pause to end, then ask (approve-each)."""
        if not self._wait_until(lambda: not self._paused, "paused"):
            return Verdict.STOP
        with self._lock:
            step_once = self._step_once
        if step_once:
            if not self._wait_until(lambda: self._steps_granted > 0 or not self._step_once,
                                    "step once: press n for the next action"):
                return Verdict.STOP
            with self._lock:
                self._steps_granted = max(0, self._steps_granted - 1)
        with self._lock:  # read now: the person may have switched it on while it waited
            approve_each = self._approve_each
        if approve_each and self.ask is not None:
            self._set_waiting("approve?")
            try:
                yes = self.ask(summary)
            finally:
                self._set_waiting(None)
            if self.stopping():
                return Verdict.STOP
            return Verdict.GO if yes else Verdict.DENY
        return Verdict.STOP if self.stopping() else Verdict.GO

    def taken_over(self, what: str) -> bool:
        """Pause until the person hands control back (resume); False when they stop instead."""
        with self._lock:
            self._paused = True
            self._handed_back = False
        self._notify(self.state())
        return self._wait_until(lambda: self._handed_back, f"you have control ({what})")

    def stopping(self) -> bool:
        """True once a stop was asked for."""
        with self._lock:
            return self._stop_reason is not None

    # -- internals ----------------------------------------------------------------------------

    def _notify(self, state: str) -> None:
        if self.on_state is not None:
            self.on_state(state)

    def _set(self, *, paused: bool | None = None, step_once: bool | None = None,
             approve_each: bool | None = None, handed_back: bool | None = None) -> None:
        with self._lock:
            if paused is not None:
                self._paused = paused
            if step_once is not None:
                self._step_once = step_once
            if approve_each is not None:
                self._approve_each = approve_each
            if handed_back is not None:
                self._handed_back = handed_back
            self._lock.notify_all()
        self._notify(self.state())

    def _set_waiting(self, what: str | None) -> None:
        with self._lock:
            self.waiting_for = what
        self._notify(self.state())

    def _wait_until(self, ready: Callable[[], bool], waiting: str) -> bool:
        """Block until ``ready()`` (read under the lock) or a stop; False on a stop."""
        with self._lock:
            if ready() or self._stop_reason is not None:
                return self._stop_reason is None
            self.waiting_for = waiting
        self._notify(self.state())
        try:
            with self._lock:
                while not ready() and self._stop_reason is None:
                    self._lock.wait(_POLL_S)
                return self._stop_reason is None
        finally:
            with self._lock:
                self.waiting_for = None
            self._notify(self.state())
