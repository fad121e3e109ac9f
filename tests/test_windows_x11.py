"""The X11 window probe on Xvfb with real xcalc and xedit, and no window manager.

Without a window manager the X server's focus stays ``PointerRoot``: keys go to the window
under the pointer, so ``focused()`` reports that window; an explicit focus (xdotool
windowfocus) is reported as set.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from Xlib import X
from Xlib.display import Display

from deskpilot.grounding.windows import WindowProbeError, X11WindowProbe
from deskpilot.grounding.xvfb import launched, xvfb

pytestmark = pytest.mark.display

CALC_AT = (60, 60)      # xcalc is about 226x394 at its default size
EDIT_AT = (600, 60)
EDIT_SIZE = (600, 400)
INSIDE_CALC = (CALC_AT[0] + 100, CALC_AT[1] + 200)
INSIDE_EDIT = (EDIT_AT[0] + 300, EDIT_AT[1] + 200)
DESKTOP = (400, 700)    # below and between both windows


def xdotool(display: str, *args: str) -> str:
    env = {**os.environ, "DISPLAY": display}
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True,
                          check=True, timeout=10).stdout


@pytest.fixture(scope="module")
def apps(display: str) -> Iterator[str]:
    """xcalc and xedit at known places on the session's display."""
    x, y = EDIT_AT
    with launched(["xcalc", "-geometry", f"+{CALC_AT[0]}+{CALC_AT[1]}"], display,
                  window="Calculator"), \
         launched(["xedit", "-geometry", f"{EDIT_SIZE[0]}x{EDIT_SIZE[1]}+{x}+{y}"], display,
                  window="xedit"):
        yield display


@pytest.fixture
def probe(apps: str) -> Iterator[X11WindowProbe]:
    with X11WindowProbe(apps) as p:
        yield p
    # Leave the focus as the server starts it, for whatever test comes next.
    xdotool(apps, "mousemove", "640", "400")


def test_under_finds_xcalc_and_xedit(probe: X11WindowProbe) -> None:
    calc = probe.under(*INSIDE_CALC)
    assert calc is not None
    assert "XCalc" in calc.wm_class and calc.title == "Calculator"
    edit = probe.under(*INSIDE_EDIT)
    assert edit is not None
    assert "Xedit" in edit.wm_class and edit.title == "xedit"
    assert calc.id != edit.id
    # The same window wherever inside it: the top-level client, not a button or the text area.
    assert probe.under(CALC_AT[0] + 10, CALC_AT[1] + 10) == calc
    assert probe.under(EDIT_AT[0] + 20, EDIT_AT[1] + 10) == edit


def test_windows_are_listed_with_their_boxes(probe: X11WindowProbe) -> None:
    # The box is where the window is (the prompt check reads only there; inspect --window).
    edit = probe.under(*INSIDE_EDIT)
    assert edit is not None and edit.box is not None
    x1, y1, x2, y2 = edit.box
    assert abs(x1 - EDIT_AT[0]) <= 2 and abs(y1 - EDIT_AT[1]) <= 2
    assert (x2 - x1, y2 - y1) == EDIT_SIZE
    listed = {w.title: w for w in probe.windows()}
    assert {"Calculator", "xedit"} <= set(listed)
    assert listed["xedit"].box == edit.box
    calc = listed["Calculator"].box
    assert calc is not None and calc[0] <= INSIDE_CALC[0] < calc[2]


def test_under_the_bare_desktop_is_none(probe: X11WindowProbe) -> None:
    assert probe.under(*DESKTOP) is None
    assert probe.under(100_000, 5) is None


def test_focused_follows_the_pointer_without_a_window_manager(apps: str,
                                                              probe: X11WindowProbe) -> None:
    xdotool(apps, "mousemove", *map(str, INSIDE_EDIT))
    focused = probe.focused()
    assert focused is not None and "Xedit" in focused.wm_class
    xdotool(apps, "mousemove", *map(str, INSIDE_CALC))
    focused = probe.focused()
    assert focused is not None and "XCalc" in focused.wm_class
    xdotool(apps, "mousemove", *map(str, DESKTOP))
    assert probe.focused() is None


def test_an_explicit_focus_is_reported(apps: str, probe: X11WindowProbe) -> None:
    edit = probe.under(*INSIDE_EDIT)
    assert edit is not None
    xdotool(apps, "mousemove", *map(str, INSIDE_CALC))
    xdotool(apps, "windowfocus", "--sync", str(edit.id))
    try:
        assert probe.focused() == edit  # the pointer is over xcalc, but keys go to xedit
    finally:
        # Back to the server's default, which the other tests on this display expect.
        conn = Display(apps)
        conn.set_input_focus(X.PointerRoot, X.RevertToPointerRoot, X.CurrentTime)
        conn.sync()
        conn.close()
    assert probe.focused() == probe.under(*INSIDE_CALC)


def test_a_closed_probe_and_a_lost_display_raise() -> None:
    with xvfb() as name:
        probe = X11WindowProbe(name)
        assert probe.under(10, 10) is None
    # The server is gone now.
    with pytest.raises(WindowProbeError):
        probe.under(10, 10)
    probe.close()
    probe.close()  # closing twice is fine
    with pytest.raises(WindowProbeError, match="closed"):
        probe.focused()
    with pytest.raises(WindowProbeError, match="cannot open"):
        X11WindowProbe("not a display name")
