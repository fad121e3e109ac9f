"""The executor on the recording fake: exact input sequences and the release guarantee."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deskpilot.actions.executor import (
    DRAG_SETTLE_S,
    DRAG_STEP_S,
    DRAG_STEPS,
    InjectedFailure,
    Interrupted,
    RecordingDevice,
    drag_path,
    execute,
    release_all,
)
from deskpilot.actions.keys import UnknownKeyError
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import (
    AskUser,
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

BOX = (0.4, 0.4, 0.6, 0.6)
ROOT = Path(__file__).resolve().parent.parent


class Sleeps:
    """An injected sleep that only records."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def run(resolved: Resolved, device: RecordingDevice | None = None, **kwargs: object) -> list:
    device = device or RecordingDevice()
    kwargs.setdefault("sleep", Sleeps())
    execute(resolved, device, **kwargs)  # type: ignore[arg-type]
    return device.calls


def click(button: str = "left", clicks: int = 1) -> Resolved:
    return Resolved(Click(action="click", box=BOX, button=button, clicks=clicks),
                    points=(Point(100, 200),))


def drag() -> Resolved:
    return Resolved(Drag(action="drag", box=BOX, to_box=BOX),
                    points=(Point(100, 100), Point(180, 140)))


def key(*keys: str) -> Resolved:
    return Resolved(Key(action="key", keys="+".join(keys)), keys=keys)


def hold(hold_keys: tuple[str, ...], keys: tuple[str, ...], presses: int = 1) -> Resolved:
    action = Hold(action="hold", hold="+".join(hold_keys), keys="+".join(keys), presses=presses)
    return Resolved(action, keys=keys, hold=hold_keys)


def type_text(text: str) -> Resolved:
    return Resolved(Type(action="type", text=text))


# Exact sequences ---------------------------------------------------------------------------

def test_click_moves_then_presses_and_releases() -> None:
    assert run(click()) == [("move", 100, 200), ("button_down", "left"), ("button_up", "left")]


def test_double_right_click() -> None:
    assert run(click("right", 2)) == [
        ("move", 100, 200),
        ("button_down", "right"), ("button_up", "right"),
        ("button_down", "right"), ("button_up", "right"),
    ]


def test_move() -> None:
    resolved = Resolved(Move(action="move", box=BOX), points=(Point(5, 6),))
    assert run(resolved) == [("move", 5, 6)]


def test_drag_presses_moves_in_steps_and_releases_on_the_target() -> None:
    sleeps = Sleeps()
    calls = run(drag(), sleep=sleeps)
    steps = [("move", 100 + 10 * i, 100 + 5 * i) for i in range(1, DRAG_STEPS + 1)]
    assert calls == [("move", 100, 100), ("button_down", "left"), *steps, ("button_up", "left")]
    assert sleeps.calls == [DRAG_SETTLE_S] + [DRAG_STEP_S] * DRAG_STEPS


def test_drag_path_ends_on_the_target_even_when_steps_do_not_divide() -> None:
    path = drag_path(Point(0, 0), Point(7, -3), steps=4)
    assert len(path) == 4
    assert path[-1] == Point(7, -3)
    assert drag_path(Point(5, 5), Point(5, 5), steps=3) == [Point(5, 5)] * 3


@pytest.mark.parametrize(("direction", "scroll"), [
    ("up", ("scroll", 3, False)), ("down", ("scroll", -3, False)),
    ("right", ("scroll", 3, True)), ("left", ("scroll", -3, True)),
])
def test_scroll_direction_and_sign(direction: str, scroll: tuple) -> None:
    resolved = Resolved(Scroll(action="scroll", box=BOX, direction=direction, amount=3),
                        points=(Point(50, 60),))
    assert run(resolved) == [("move", 50, 60), scroll]


def test_type_writes_in_chunks() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(70))
    calls = run(type_text(text), type_chunk=32)
    assert calls == [("write", text[:32]), ("write", text[32:64]), ("write", text[64:])]


def test_type_turns_crlf_into_one_newline() -> None:
    assert run(type_text("a\r\nb\nc")) == [("write", "a\nb\nc")]


def test_key_chord_presses_in_order_and_releases_in_reverse() -> None:
    assert run(key("ctrl", "shift", "t")) == [
        ("key_down", "ctrl"), ("key_down", "shift"), ("key_down", "t"),
        ("key_up", "t"), ("key_up", "shift"), ("key_up", "ctrl"),
    ]


def test_single_key() -> None:
    assert run(key("enter")) == [("key_down", "enter"), ("key_up", "enter")]


def test_hold_keeps_keys_down_while_pressing() -> None:
    assert run(hold(("shift",), ("down",), presses=3)) == [
        ("key_down", "shift"),
        ("key_down", "down"), ("key_up", "down"),
        ("key_down", "down"), ("key_up", "down"),
        ("key_down", "down"), ("key_up", "down"),
        ("key_up", "shift"),
    ]


def test_hold_does_not_press_a_held_key_again() -> None:
    assert run(hold(("ctrl",), ("ctrl", "c"), presses=2)) == [
        ("key_down", "ctrl"),
        ("key_down", "c"), ("key_up", "c"),
        ("key_down", "c"), ("key_up", "c"),
        ("key_up", "ctrl"),
    ]


def test_wait_uses_the_injected_sleep() -> None:
    sleeps = Sleeps()
    assert run(Resolved(Wait(action="wait", seconds=2.5)), sleep=sleeps) == []
    assert sleeps.calls == [2.5]


def test_wait_with_a_stop_callback_sleeps_in_slices() -> None:
    sleeps = Sleeps()
    run(Resolved(Wait(action="wait", seconds=1.1)), sleep=sleeps, should_stop=lambda: False)
    assert sum(sleeps.calls) == pytest.approx(1.1)
    assert max(sleeps.calls) <= 0.25


def test_wait_stops_when_asked() -> None:
    sleeps = Sleeps()
    polls = iter([False, False, True])
    with pytest.raises(Interrupted):
        run(Resolved(Wait(action="wait", seconds=10.0)), sleep=sleeps,
            should_stop=lambda: next(polls))
    assert len(sleeps.calls) == 2


@pytest.mark.parametrize("action", [
    Done(action="done", answer="42"), Fail(action="fail", reason="no"),
    AskUser(action="ask_user", question="which?"),
])
def test_control_actions_touch_no_input(action: Done | Fail | AskUser) -> None:
    sleeps = Sleeps()
    assert run(Resolved(action), sleep=sleeps) == []
    assert sleeps.calls == []


@pytest.mark.parametrize("resolved", [
    Resolved(Click(action="click", box=BOX)),
    Resolved(Drag(action="drag", box=BOX, to_box=BOX), points=(Point(1, 1),)),
    Resolved(Move(action="move", box=BOX), points=(Point(1, 1), Point(2, 2))),
    Resolved(Key(action="key", keys="ctrl+s")),
])
def test_malformed_resolved_actions_are_refused_before_any_input(resolved: Resolved) -> None:
    device = RecordingDevice()
    with pytest.raises(ValueError, match=r"needs|has no"):
        execute(resolved, device, sleep=Sleeps())
    assert device.calls == []


def test_unknown_key_names_never_reach_the_device() -> None:
    device = RecordingDevice()
    with pytest.raises(UnknownKeyError):
        execute(Resolved(Key(action="key", keys="x"), keys=("ctrl", "bogus")), device)
    assert device.calls == []


def test_type_chunk_must_be_positive() -> None:
    with pytest.raises(ValueError, match="type_chunk"):
        run(type_text("a"), type_chunk=0)


# The release guarantee ---------------------------------------------------------------------

RISKY = {
    "drag": drag(),
    "double_click": click("left", 2),
    "key_chord": key("ctrl", "alt", "shift", "t"),
    "hold": hold(("ctrl", "shift"), ("alt", "tab"), presses=3),
    "hold_overlap": hold(("ctrl",), ("ctrl", "c"), presses=2),
    "long_type": type_text("x" * 200),
}


@pytest.mark.parametrize("name", sorted(RISKY))
@pytest.mark.parametrize("fail_after", [False, True], ids=["before", "after"])
def test_failure_at_every_call_leaves_nothing_held(name: str, fail_after: bool) -> None:
    resolved = RISKY[name]
    total = len(run(resolved))
    assert total > 0
    for index in range(total):
        device = RecordingDevice(fail_at={index}, fail_after=fail_after)
        with pytest.raises(InjectedFailure, match=f"call {index}:"):
            run(resolved, device)
        assert device.keys_down == [], (name, index)
        assert device.buttons_down == [], (name, index)


def test_keyboard_interrupt_mid_drag_still_releases_the_button() -> None:
    device = RecordingDevice(fail_at={3}, error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        run(drag(), device)
    assert device.buttons_down == []
    assert device.calls[-1] == ("button_up", "left")


def test_a_failed_release_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    # Calls: 0 ctrl down, 1 shift down, 2 a down, 3 a up (fails), then the final release:
    # 4 a up (fails again), 5 shift up, 6 ctrl up.
    device = RecordingDevice(fail_at={3, 4})
    with caplog.at_level(logging.ERROR, logger="deskpilot.actions.executor"), \
            pytest.raises(InjectedFailure, match="call 3:"):
        run(hold(("ctrl", "shift"), ("a",)), device)
    assert device.calls[4:] == [("key_up", "a"), ("key_up", "shift"), ("key_up", "ctrl")]
    assert device.keys_down == ["a"]  # the one release the fake refused
    assert any("could not release" in r.getMessage() for r in caplog.records)


def test_an_interrupt_during_release_surfaces_after_the_other_releases() -> None:
    def error(message: str) -> BaseException:
        return KeyboardInterrupt(message) if "call 3:" in message else InjectedFailure(message)

    # 0 ctrl down, 1 shift down, 2 t down (fails), then releases 3 t (interrupt), 4 shift, 5 ctrl.
    device = RecordingDevice(fail_at={2, 3}, error=error)
    with pytest.raises(KeyboardInterrupt):
        run(key("ctrl", "shift", "t"), device)
    assert device.calls[3:] == [("key_up", "t"), ("key_up", "shift"), ("key_up", "ctrl")]
    assert device.keys_down == []


def test_stop_between_type_chunks_leaves_nothing_held() -> None:
    polls: list[bool] = []

    def should_stop() -> bool:
        polls.append(True)
        return len(polls) >= 2

    device = RecordingDevice()
    with pytest.raises(Interrupted, match="64 of 100"):
        run(type_text("y" * 100), device, type_chunk=32, should_stop=should_stop)
    assert device.calls == [("write", "y" * 32), ("write", "y" * 32)]
    assert device.keys_down == []


def test_stop_between_hold_presses_releases_the_held_keys() -> None:
    polls = iter([False, True])
    device = RecordingDevice()
    with pytest.raises(Interrupted, match="2 of 5"):
        run(hold(("shift",), ("down",), presses=5), device, should_stop=lambda: next(polls))
    assert device.calls[-1] == ("key_up", "shift")
    assert device.keys_down == []


def test_stop_mid_drag_releases_the_button() -> None:
    polls = iter([False, False, True])
    device = RecordingDevice()
    with pytest.raises(Interrupted, match=f"2 of {DRAG_STEPS} moves"):
        run(drag(), device, should_stop=lambda: next(polls))
    moves = [c for c in device.calls if c[0] == "move"]
    assert len(moves) == 3  # to the start, then two of the path
    assert device.calls[-1] == ("button_up", "left")
    assert device.buttons_down == []


# Panic release and lazy import -------------------------------------------------------------

def test_release_all_releases_buttons_then_modifiers() -> None:
    device = RecordingDevice()
    assert release_all(device) == ()
    assert device.calls == [
        ("button_up", "left"), ("button_up", "right"), ("button_up", "middle"),
        ("key_up", "alt"), ("key_up", "ctrl"), ("key_up", "shift"), ("key_up", "win"),
    ]


def test_release_all_goes_on_after_a_failure() -> None:
    device = RecordingDevice(fail_at={0, 4})
    assert release_all(device) == ("left", "ctrl")
    assert len(device.calls) == 7


def test_importing_the_executor_does_not_open_the_display() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    code = ("import sys, actions.executor, actions.keys; "
            "sys.exit('pyautogui' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=False,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
