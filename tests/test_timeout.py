"""TimeoutRuntime: a deadline on every model call, and no call after an abandoned one."""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Iterator

import pytest

from deskpilot.models import timeout as timeout_module
from deskpilot.models.runtime import Reply, Request, Runtime, RuntimeFailure
from deskpilot.models.scripted import ScriptedRuntime
from deskpilot.models.timeout import TimeoutRuntime

REQUEST = Request(prompt="what now?")


class Hanging:
    """A runtime whose call blocks until ``release`` is set (never, unless a test does)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls = 0
        self.closed = 0

    @property
    def name(self) -> str:
        return "hanging"

    def complete(self, request: Request) -> Reply:
        self.calls += 1
        self.entered.set()
        self.release.wait()
        return Reply(answer="late")

    def close(self) -> None:
        self.closed += 1


class Raising:
    """A runtime whose call raises the given exception."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    @property
    def name(self) -> str:
        return "raising"

    def complete(self, request: Request) -> Reply:
        raise self.error

    def close(self) -> None:
        pass


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    inner = Hanging()
    yield inner
    inner.release.set()  # let the abandoned worker thread end


def test_it_is_a_runtime() -> None:
    runtime: Runtime = TimeoutRuntime(ScriptedRuntime(["a"]), 1.0)
    assert runtime.name == "scripted"


def test_fast_calls_pass_through_with_the_reply_and_in_order() -> None:
    inner = ScriptedRuntime(["one", Reply(answer="two", reasoning="because")])
    runtime = TimeoutRuntime(inner, 5.0)
    assert runtime.complete(REQUEST).answer == "one"
    reply = runtime.complete(Request(prompt="again"))
    assert (reply.answer, reply.reasoning) == ("two", "because")
    assert [r.prompt for r in inner.requests] == ["what now?", "again"]
    assert runtime.broken is None


def test_on_text_still_streams() -> None:
    seen: list[str] = []
    runtime = TimeoutRuntime(ScriptedRuntime(["streamed"]), 5.0)
    runtime.complete(Request(prompt="p", on_text=seen.append))
    assert seen == ["streamed"]


def test_a_hanging_call_fails_at_the_deadline_and_every_later_call_at_once(
        hanging: Hanging) -> None:
    runtime = TimeoutRuntime(hanging, 0.3)
    started = time.monotonic()
    with pytest.raises(RuntimeFailure) as caught:
        runtime.complete(REQUEST)
    took = time.monotonic() - started
    assert 0.3 <= took < 0.8
    assert str(caught.value) == ("the model did not answer within 0.3 s; "
                                 "the call was abandoned")
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(RuntimeFailure, match="no new call can start") as later:
            runtime.complete(REQUEST)
        assert time.monotonic() - started < 0.05
        assert "did not answer within 0.3 s" in str(later.value)
    assert hanging.calls == 1  # the inner model never saw a second call
    assert runtime.broken is not None


def test_a_call_that_answers_after_the_deadline_still_leaves_it_broken(
        hanging: Hanging) -> None:
    runtime = TimeoutRuntime(hanging, 0.1)
    with pytest.raises(RuntimeFailure):
        runtime.complete(REQUEST)
    hanging.release.set()
    time.sleep(0.05)
    with pytest.raises(RuntimeFailure, match="abandoned"):
        runtime.complete(REQUEST)


@pytest.mark.parametrize("error", [RuntimeFailure("decode failed"), ValueError("bad image"),
                                   MemoryError("out of memory")])
def test_exceptions_from_the_inner_call_propagate_unchanged(error: BaseException) -> None:
    runtime = TimeoutRuntime(Raising(error), 5.0)
    with pytest.raises(type(error)) as caught:
        runtime.complete(REQUEST)
    assert caught.value is error
    assert runtime.broken is None  # an answer (even an exception) is not an abandoned call


def test_ctrl_c_during_the_wait_propagates_and_breaks_the_runtime(hanging: Hanging) -> None:
    runtime = TimeoutRuntime(hanging, 30.0)
    timer = threading.Timer(0.2, _thread.interrupt_main)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            runtime.complete(REQUEST)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 1.0
    with pytest.raises(RuntimeFailure, match=r"interrupted \(KeyboardInterrupt\)"):
        runtime.complete(REQUEST)


def test_close_delegates() -> None:
    inner = Hanging()
    inner.release.set()
    runtime = TimeoutRuntime(inner, 5.0)
    runtime.complete(REQUEST)
    runtime.close()
    runtime.close()
    assert inner.closed == 2


def test_close_does_not_free_the_model_under_a_call_still_running(
        hanging: Hanging, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeout_module, "CLOSE_WAIT_S", 0.1)
    runtime = TimeoutRuntime(hanging, 0.1)
    with pytest.raises(RuntimeFailure):
        runtime.complete(REQUEST)
    started = time.monotonic()
    runtime.close()
    assert time.monotonic() - started < 0.5
    assert hanging.closed == 0
    hanging.release.set()  # the call ends: now the model can be freed
    runtime.close()
    assert hanging.closed == 1


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TimeoutRuntime(ScriptedRuntime([]), 0)
