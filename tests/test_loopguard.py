"""Loop detection: the same action with no effect, and A-B-A-B cycles back to the same screen."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deskpilot.actions.parse import parse_action
from deskpilot.actions.types import Click, Key, Type
from deskpilot.agent.loopguard import LoopGuard, action_key, describe_key


def _frame(level: int = 0, *, mark: int | None = None) -> np.ndarray:
    """A 120x160 frame; ``mark`` draws a bright block at a column (a caret, a typed letter)."""
    rgb = np.full((120, 160, 3), level, np.uint8)
    if mark is not None:
        rgb[40:60, mark:mark + 8] = 255
    return rgb


def _click(box: tuple[float, float, float, float] = (0.4, 0.4, 0.6, 0.6),
           target: str = "OK") -> Click:
    return Click(action="click", target=target, box=box)


OK = action_key(_click())
CANCEL = action_key(_click((0.7, 0.4, 0.9, 0.6), "Cancel"))
ESC = action_key(Key(action="key", keys="esc"))


def _feed(guard: LoopGuard, steps: list[tuple[str, np.ndarray]]) -> list[str | None]:
    return [guard.observe(key, frame) for key, frame in steps]


def test_same_action_on_an_unchanged_screen_fires_on_the_third() -> None:
    results = _feed(LoopGuard(), [(OK, _frame())] * 4)
    assert results[:2] == [None, None]
    assert results[2] is not None
    assert results[2].startswith("the same action 3 times with no change on the screen: click")
    assert "box=[0.40, 0.40, 0.60, 0.60]" in results[2]


def test_the_reason_uses_the_label_when_given() -> None:
    guard = LoopGuard()
    for _ in range(2):
        assert guard.observe(OK, _frame(), label="click 'OK' at (400, 300)") is None
    reason = guard.observe(OK, _frame(), label="click 'OK' at (400, 300)")
    assert reason == ("the same action 3 times with no change on the screen: "
                      "click 'OK' at (400, 300)")


def test_same_action_that_changes_the_screen_never_fires() -> None:
    # Typing into a field: the same key action each step, a new character on screen each time.
    key = action_key(Type(action="type", text="a"))
    results = _feed(LoopGuard(), [(key, _frame(mark=10 + 10 * i)) for i in range(10)])
    assert results == [None] * 10


def test_a_change_anywhere_in_the_run_of_repeats_resets_it() -> None:
    frames = [_frame(), _frame(), _frame(mark=50), _frame(mark=50), _frame(mark=50)]
    results = _feed(LoopGuard(), [(OK, f) for f in frames])
    assert results == [None, None, None, None, "the same action 3 times with no change on the "
                       "screen: " + describe_key(OK)]


def test_noise_below_the_change_level_is_no_change() -> None:
    frames = [_frame(100), _frame(103), _frame(98)]  # encoder noise, not a redraw
    assert _feed(LoopGuard(), [(OK, f) for f in frames])[-1] is not None


def test_different_actions_on_an_unchanged_screen_do_not_count_as_repeats() -> None:
    keys = [OK, ESC, CANCEL, OK, ESC, action_key(Key(action="key", keys="tab"))]
    assert _feed(LoopGuard(), [(k, _frame()) for k in keys]) == [None] * 6


def test_a_b_a_b_back_to_the_same_screen_fires() -> None:
    # Open a menu (screen changes), close it (screen returns), open, close.
    shut, opened = _frame(), _frame(mark=80)
    steps = [(OK, shut), (ESC, opened), (OK, shut), (ESC, opened)]
    results = _feed(LoopGuard(), steps)
    assert results[:3] == [None, None, None]
    assert results[3] is not None and "in turn 2 times" in results[3]
    assert "click box=" in results[3] and "key keys='esc'" in results[3]


def test_a_b_a_b_fires_whatever_the_b_screens_show() -> None:
    steps = [(OK, _frame()), (ESC, _frame(mark=20)), (OK, _frame()), (ESC, _frame(mark=90))]
    assert _feed(LoopGuard(), steps)[-1] is not None


def test_a_b_a_b_that_makes_progress_does_not_fire() -> None:
    # The A steps see a different screen each time (a list scrolling on, say).
    steps = [(OK, _frame(mark=10)), (ESC, _frame(mark=20)), (OK, _frame(mark=30)),
             (ESC, _frame(mark=40))]
    assert _feed(LoopGuard(), steps) == [None] * 4


def test_a_b_a_c_does_not_fire() -> None:
    steps = [(OK, _frame()), (ESC, _frame()), (OK, _frame()), (CANCEL, _frame())]
    assert _feed(LoopGuard(), steps) == [None] * 4


def test_longer_cycles_and_more_rounds_are_configurable() -> None:
    tab = action_key(Key(action="key", keys="tab"))
    guard = LoopGuard(cycle_len=3, cycles=3)
    steps = [(k, _frame()) for k in [OK, ESC, tab] * 3]
    results = _feed(guard, steps)
    assert results[:8] == [None] * 8 and results[8] is not None
    assert "the same 3 actions in turn 3 times" in results[8]


def test_repeats_is_configurable() -> None:
    results = _feed(LoopGuard(repeats=5), [(OK, _frame())] * 5)
    assert results == [None] * 4 + [results[4]] and results[4] is not None
    assert "the same action 5 times" in results[4]


def test_jittered_boxes_are_the_same_action() -> None:
    boxes = [(0.401, 0.399, 0.6, 0.6), (0.404, 0.4, 0.599, 0.602), (0.406, 0.402, 0.601, 0.598)]
    keys = [action_key(_click(b)) for b in boxes]
    assert keys[0] == action_key(_click())  # within the rounding
    assert keys[1] != keys[2]  # 0.404 / 0.406 straddle a rounding boundary ...
    assert _feed(LoopGuard(), [(k, _frame()) for k in keys])[-1] is not None  # ... still same


def test_boxes_further_apart_are_different_actions() -> None:
    keys = [action_key(_click((0.4 + 0.03 * i, 0.4, 0.6 + 0.03 * i, 0.6))) for i in range(3)]
    assert _feed(LoopGuard(), [(k, _frame()) for k in keys]) == [None] * 3


def test_target_text_does_not_count() -> None:
    keys = [action_key(_click(target=t)) for t in ("OK", "the OK button", "")]
    assert len(set(keys)) == 1
    assert _feed(LoopGuard(), [(k, _frame()) for k in keys])[-1] is not None


def test_other_fields_do_count() -> None:
    right = action_key(Click(action="click", box=(0.4, 0.4, 0.6, 0.6), button="right"))
    double = action_key(Click(action="click", box=(0.4, 0.4, 0.6, 0.6), clicks=2))
    assert len({OK, right, double}) == 3
    assert _feed(LoopGuard(), [(k, _frame()) for k in (OK, right, double)]) == [None] * 3


def test_action_key_is_canonical_json() -> None:
    key = action_key(parse_action('{"action": "drag", "target": "file", '
                                  '"box": [0.123, 0.2, 0.3, 0.4], "to_box": [0, 0, 0.5, 0.5]}'))
    assert json.loads(key) == {"action": "drag", "box": [0.12, 0.2, 0.3, 0.4],
                               "to_box": [0.0, 0.0, 0.5, 0.5]}
    assert key == action_key(parse_action('{"to_box": [0, 0, 0.5, 0.5], "action": "drag", '
                                          '"box": [0.12, 0.2, 0.3, 0.4]}'))


def test_reset_forgets_the_history() -> None:
    guard = LoopGuard()
    _feed(guard, [(OK, _frame())] * 2)
    guard.reset()
    assert _feed(guard, [(OK, _frame())] * 2) == [None, None]


def test_screens_of_another_size_count_as_changed() -> None:
    frames = [_frame(), np.zeros((200, 160, 3), np.uint8), _frame()]
    assert _feed(LoopGuard(), [(OK, f) for f in frames]) == [None] * 3


@pytest.mark.parametrize("kw", [{"repeats": 1}, {"cycle_len": 1}, {"cycles": 1}])
def test_settings_that_would_fire_on_every_step_are_refused(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        LoopGuard(**kw)
