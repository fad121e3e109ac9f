"""A deadline on every model call, so that a hung runtime cannot hang the run with it.

A llama.cpp call is native code: it cannot be cancelled from Python, and while it runs in the
main thread no signal handler runs either (Ctrl+C included). :class:`TimeoutRuntime` runs each
call in a daemon worker thread and waits for it in short slices, in the main thread: the wait
ends at the deadline with a :class:`~models.runtime.RuntimeFailure`, and an interrupt still
lands within a slice.

A call that timed out is abandoned, not stopped: the worker thread goes on running it, and it
still holds the model (its context, its KV cache, the GPU). A second call on the same model
would run beside it, on state it is changing. So after an abandoned call the wrapper is
*broken*: every later call fails at once with the reason, and :meth:`TimeoutRuntime.close`
does not free the inner runtime under a call that is still running. Being a daemon, the
worker does not keep the process alive at exit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from deskpilot.models.runtime import Reply, Request, Runtime, RuntimeFailure

log = logging.getLogger(__name__)

# The main thread wakes this often while it waits, so an interrupt is never held up longer
# (Event.wait is interruptible on POSIX anyway; the slices also cover platforms where not).
WAIT_SLICE_S = 0.1
# How long close() waits for an abandoned call to finish before leaving the model to the exit.
CLOSE_WAIT_S = 2.0


class _Call:
    """One call on the worker thread: its outcome, once there is one."""

    def __init__(self, inner: Runtime, request: Request) -> None:
        self.done = threading.Event()
        self.reply: Reply | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(inner, request),
                                       name="model-call", daemon=True)

    def _run(self, inner: Runtime, request: Request) -> None:
        try:
            self.reply = inner.complete(request)
        except BaseException as exc:  # handed to the waiting thread, which re-raises it
            self.error = exc
        finally:
            self.done.set()


class TimeoutRuntime:
    """Wraps a :class:`~models.runtime.Runtime`; each call must answer within ``timeout_s``.

    ``request.on_text`` is called from the worker thread. ``clock`` is for tests.
    """

    def __init__(self, inner: Runtime, timeout_s: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.inner = inner
        self.timeout_s = timeout_s
        self._clock = clock
        self._broken: str | None = None
        self._running: _Call | None = None  # the call abandoned while still running

    @property
    def name(self) -> str:
        """The inner runtime's name."""
        return self.inner.name

    @property
    def broken(self) -> str | None:
        """Why no call may start any more, or None while calls may."""
        return self._broken

    def complete(self, request: Request) -> Reply:
        """The inner runtime's reply, or its exception unchanged, or a RuntimeFailure at the
        deadline (after which every call fails at once)."""
        if self._broken is not None:
            raise RuntimeFailure(self._broken)
        call = _Call(self.inner, request)
        deadline = self._clock() + self.timeout_s
        call.thread.start()
        try:
            while not call.done.wait(max(0.0, min(WAIT_SLICE_S, deadline - self._clock()))):
                if self._clock() >= deadline:
                    self._abandon(call, f"the model did not answer within {self.timeout_s:g} s")
                    raise RuntimeFailure(f"the model did not answer within {self.timeout_s:g} "
                                         "s; the call was abandoned")
        except BaseException as exc:
            if not call.done.is_set() and self._broken is None:
                # Ctrl+C (or anything else) mid-wait: the call runs on all the same.
                self._abandon(call, f"a model call was interrupted ({type(exc).__name__})")
            raise
        if call.error is not None:
            raise call.error
        assert call.reply is not None
        return call.reply

    def _abandon(self, call: _Call, why: str) -> None:
        self._running = call
        self._broken = (f"{why}; the call was abandoned and may still be running in the model, "
                        "so no new call can start: the runtime must be restarted")
        log.error("%s", self._broken)

    def close(self) -> None:
        """Close the inner runtime, unless an abandoned call is still running in it.

        An abandoned call gets :data:`CLOSE_WAIT_S` to finish; if it has not, the inner runtime
        is left open (freeing a model under a running native call would crash the process) and
        the operating system reclaims it at exit. So close never blocks for longer than that.
        Safe to call twice.
        """
        running = self._running
        if running is not None and not running.done.wait(CLOSE_WAIT_S):
            log.warning("not closing %s: an abandoned call is still running in it",
                        self.inner.name)
            return
        self._running = None
        self.inner.close()


__all__ = ["CLOSE_WAIT_S", "WAIT_SLICE_S", "TimeoutRuntime"]
