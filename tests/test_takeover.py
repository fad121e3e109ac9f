"""The takeover watch without a display: hotkey syntax, and the listener's lines fed by hand."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest

from deskpilot.agent.takeover import (
    DEFAULT_KILL_HOTKEY,
    MAX_HANDED_BACK,
    TakeoverWatch,
    describe_hotkey,
    parse_hotkey,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def line(kind: str, **fields: object) -> str:
    return json.dumps({"kind": kind, **fields}) + "\n"


def move(x: int, y: int) -> str:
    return line("move", x=x, y=y)


def click(x: int, y: int, button: str = "left", to: tuple[int, int] | None = None) -> list[str]:
    end = to or (x, y)
    return [line("press", button=button, x=x, y=y),
            *([move(*end)] if to else []),
            line("release", button=button, x=end[0], y=end[1])]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def watch(clock: Clock) -> TakeoverWatch:
    return TakeoverWatch(clock=clock)


# Hotkeys --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "expected"), [
    (DEFAULT_KILL_HOTKEY, "<ctrl>+<alt>+k"),
    ("  <Ctrl>+<Alt>+K ", "<ctrl>+<alt>+k"),
    ("<cmd>+<shift>+q", "<cmd>+<shift>+q"),
    ("<ctrl>++", "<ctrl>++"),
])
def test_parse_hotkey_accepts_pynput_syntax(given: str, expected: str) -> None:
    assert parse_hotkey(given) == expected


@pytest.mark.parametrize("given", [
    "", "   ", "<ctrl>+", "ctrl+alt+k", "<ctrl>+<alt>+kk", "<>+k", "Ctrl+Alt+K",
    "k", "<shift>+k",  # no ctrl, alt or cmd: typing would set it off
])
def test_parse_hotkey_refuses_and_shows_the_syntax(given: str) -> None:
    with pytest.raises(ValueError, match=re.escape("e.g. <ctrl>+<alt>+k")):
        parse_hotkey(given)


def test_a_bad_hotkey_fails_when_the_watch_is_made() -> None:
    with pytest.raises(ValueError, match="needs <ctrl>, <alt> or <cmd>"):
        TakeoverWatch(kill_hotkey="<shift>+x")


@pytest.mark.parametrize(("given", "label"), [
    (DEFAULT_KILL_HOTKEY, "Ctrl+Alt+K"),
    ("<cmd>+<shift>+<page_up>", "Super+Shift+Page Up"),
    ("<ctrl>+<esc>", "Ctrl+Esc"),
    ("<ctrl>++", "Ctrl++"),
    ("<alt>+<f4>", "Alt+F4"),
])
def test_describe_hotkey(given: str, label: str) -> None:
    assert describe_hotkey(given) == label


# Takeover -------------------------------------------------------------------------------------

def test_the_first_event_is_what_taken_says(watch: TakeoverWatch) -> None:
    assert watch.taken() is None
    watch.feed(move(17, 23))
    watch.feed(line("key"))
    assert watch.taken() == "the pointer moved to (17, 23)"


@pytest.mark.parametrize(("event", "said"), [
    (line("press", button="right", x=5, y=6), "a right click at (5, 6)"),
    (line("scroll", x=1, y=2, dx=0, dy=-1), "a scroll"),
    (line("key"), "a key press"),
])
def test_each_kind_of_event_is_described(watch: TakeoverWatch, event: str, said: str) -> None:
    watch.feed(event)
    assert watch.taken() == said


def test_events_while_acting_and_in_the_grace_period_are_the_agents(
        watch: TakeoverWatch, clock: Clock) -> None:
    with watch.acting():
        watch.feed(move(1, 1))
    watch.feed(move(2, 2))
    clock.now += 0.2
    watch.feed(move(3, 3))
    assert watch.taken() is None and watch.reset() == []
    clock.now += 0.1
    watch.feed(move(4, 4))
    assert watch.taken() == "the pointer moved to (4, 4)"


def test_odd_lines_are_logged_and_ignored(watch: TakeoverWatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="deskpilot.agent.takeover"):
        for odd in ["not json\n", "[1, 2]\n", line("teleport"), line("move", z=1), "\n"]:
            watch.feed(odd)
    assert watch.taken() is None and not watch.killed()
    assert sum("ignored a line" in r.getMessage() for r in caplog.records) == 4


# What the person did, in the agent's action space --------------------------------------------

def test_reset_returns_what_the_person_did_collapsed(watch: TakeoverWatch) -> None:
    for event in [move(10, 10), move(50, 60), move(70, 80),
                  *[line("key") for _ in range(6)],
                  move(200, 210), *click(200, 210),
                  move(300, 300), *click(300, 300, to=(400, 420)),
                  line("scroll", x=5, y=5, dx=0, dy=-1), line("scroll", x=5, y=5, dx=0, dy=-2),
                  line("scroll", x=5, y=5, dx=0, dy=1),
                  line("key"), move(500, 500), move(510, 505)]:
        watch.feed(event)
    assert watch.reset() == ["move(70, 80)", "typed 6 keys", "click(left, 200, 210)",
                             "drag(left, 300, 300, 400, 420)", "scroll(down, 3, 5, 5)",
                             "scroll(up, 1, 5, 5)", "typed 1 key", "move(510, 505)"]
    assert watch.taken() is None and watch.reset() == []


def test_a_button_still_down_is_reported_as_a_press(watch: TakeoverWatch) -> None:
    watch.feed(line("press", button="left", x=9, y=8))
    assert watch.reset() == ["press(left, 9, 8)"]


def test_only_the_newest_lines_are_kept(watch: TakeoverWatch) -> None:
    for i in range(MAX_HANDED_BACK + 5):
        for event in click(i, i):
            watch.feed(event)
    did = watch.reset()
    assert did[0] == "... 5 earlier" and len(did) == MAX_HANDED_BACK + 1
    assert did[-1] == f"click(left, {MAX_HANDED_BACK + 4}, {MAX_HANDED_BACK + 4})"


# Kill switch ----------------------------------------------------------------------------------

def test_the_kill_is_honoured_while_acting_and_survives_reset(clock: Clock) -> None:
    calls: list[str] = []
    watch = TakeoverWatch(on_kill=lambda: calls.append("kill"), clock=clock)
    with watch.acting():
        watch.feed(line("key"))
        watch.feed(line("kill"))
    assert watch.killed() and calls == ["kill"]
    assert watch.taken() is None  # the hotkey's own keys were pressed while acting
    watch.reset()
    assert watch.killed()


def test_a_failing_on_kill_does_not_stop_the_reader(clock: Clock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    watch = TakeoverWatch(on_kill=boom, clock=clock)
    with caplog.at_level(logging.ERROR, logger="deskpilot.agent.takeover"):
        watch.feed(line("kill"))
    watch.feed(move(1, 2))
    assert watch.killed() and watch.taken() == "the pointer moved to (1, 2)"
    assert any("on_kill failed" in r.getMessage() for r in caplog.records)


def test_without_a_hotkey_nothing_is_parsed() -> None:
    assert not TakeoverWatch(kill_hotkey=None).killed()


def test_a_listener_that_cannot_start_is_reported_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)  # the child's pynput cannot load without it
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not start"):
        TakeoverWatch().start(timeout_s=30)
    assert time.monotonic() - started < 10  # the listener's exit said so, not the timeout
