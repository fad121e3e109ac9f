"""The safety policy, pure: sensitive keys, clicks, terminals, secrets, scope, focus, approvers."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deskpilot.actions.approval import DenyAll, TerminalApprover
from deskpilot.actions.categories import APPROVAL_CATEGORIES, Category
from deskpilot.actions.policy import (
    Concern,
    Policy,
    PolicyDenied,
    Review,
    Scope,
    secret_spans,
)
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import (
    AnyAction,
    Button,
    Click,
    Done,
    Drag,
    Hold,
    Key,
    Move,
    Scroll,
    Type,
    Wait,
)
from deskpilot.actions.validate import validate
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import PixelBox, Point, ScreenGeometry, View
from deskpilot.grounding.ocr import FakeReader, OcrError, TextLine
from deskpilot.grounding.windows import FakeWindowProbe, WindowInfo, WindowProbeError

W, H = 1280, 800
SCREEN = ScreenGeometry(0, 0, W, H)
VIEW = View.full(SCREEN, W, H)

XTERM = WindowInfo(0x100, "user@box: ~", ("xterm", "XTerm"))
XEDIT = WindowInfo(0x200, "xedit", ("xedit", "Xedit"))
XCALC = WindowInfo(0x300, "Calculator", ("xcalc", "XCalc"))

# Screen-wide token patterns are built at run time so that no scanner mistakes this file for one
# holding real keys.
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
OPENAI_KEY = "sk-" + "proj-Xy7Qw2Er9Ty4Ui1Op6As3Df8Gh5Jk0"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0"
       + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
PRIVATE_KEY = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
RANDOM_TOKEN = "Uv3QY0HeKM97gGxQBh23kT8w"


def at(x: int, y: int) -> tuple[float, float, float, float]:
    """A normalized box whose centre maps to screen point (x, y) in VIEW."""
    nx, ny = (x + 0.5) / W, (y + 0.5) / H
    return (nx, ny, nx, ny)


def resolve(action: AnyAction) -> Resolved:
    return validate(action, VIEW)


def click(x: int, y: int, *, target: str = "", button: Button = "left") -> Resolved:
    return resolve(Click(action="click", box=at(x, y), target=target, button=button))


def key(keys: str) -> Resolved:
    return resolve(Key(action="key", keys=keys))


def typing(text: str) -> Resolved:
    return resolve(Type(action="type", text=text))


def blank_frame(screen: ScreenGeometry = SCREEN) -> Frame:
    return Frame(np.zeros((screen.pixel_height, screen.pixel_width, 3), np.uint8), screen, 0.0)


def line(text: str, box: PixelBox) -> TextLine:
    return TextLine(text, box, 0.95)


def categories(concerns: tuple[Concern, ...]) -> list[Category]:
    return [c.category for c in concerns]


# --- Sensitive keys -----------------------------------------------------------------------------

SENSITIVE_CHORDS = [
    "ctrl+alt+delete", "ctrl+alt+del", "ctrl+alt+shift+delete", "ctrl+alt+backspace",
    "ctrl+alt+f1", "ctrl+alt+f7", "ctrl+alt+f12", "win", "super", "win+l", "super+r",
    "win+shift+e", "alt+f1", "alt+f2", "alt+f4", "ctrl+alt+t", "ctrl+alt+l", "ctrl+alt+esc",
    "ctrl+q", "ctrl+shift+q", "shift+delete", "alt+printscreen",
]


@pytest.mark.parametrize("chord", SENSITIVE_CHORDS)
def test_sensitive_chords_need_approval(chord: str) -> None:
    review = Policy().review(key(chord), None)
    assert review.refusals == ()
    assert categories(review.approvals) == [Category.SENSITIVE_KEYS]
    assert not review.ok


@pytest.mark.parametrize(("hold", "keys"), [("ctrl+alt", "delete"), ("win", "l"),
                                            ("alt+printscreen", "b"), ("ctrl+alt", "f2")])
def test_sensitive_chords_through_hold_need_approval(hold: str, keys: str) -> None:
    review = Policy().review(resolve(Hold(action="hold", hold=hold, keys=keys)), None)
    assert categories(review.approvals) == [Category.SENSITIVE_KEYS]


@pytest.mark.parametrize("chord", ["ctrl+s", "enter", "ctrl+c", "ctrl+v", "alt+f", "f4",
                                   "delete", "backspace", "ctrl+alt+a", "ctrl+shift+t", "tab",
                                   "esc", "ctrl+z", "shift+tab"])
def test_benign_chords_pass(chord: str) -> None:
    assert Policy().review(key(chord), None).ok


def test_the_reason_names_the_chord() -> None:
    (concern,) = Policy().review(key("ctrl+alt+del"), None).approvals
    assert "ctrl+alt+delete" in concern.reason
    assert "\n" not in concern.reason


def test_control_actions_pass() -> None:
    policy = Policy(scope=Scope(region=(0, 0, 10, 10)))
    for action in (Wait(action="wait"), Done(action="done")):
        assert policy.review(resolve(action), None).ok


# --- Terminals and run dialogs ------------------------------------------------------------------

COMMAND_WINDOWS = [
    XTERM,
    WindowInfo(1, "Terminal", ("gnome-terminal-server", "Gnome-terminal")),
    WindowInfo(2, "~", ("st-256color", "st-256color")),
    WindowInfo(3, "zsh", ("org.wezfurlong.wezterm", "org.wezfurlong.wezterm")),
    WindowInfo(4, "fish", ("kitty", "kitty")),
    WindowInfo(5, "urxvt", ("urxvt", "URxvt")),
    WindowInfo(6, "", ("krunner", "krunner")),
    WindowInfo(7, "Run Application", ("", "")),
    WindowInfo(8, "alice@laptop: ~/src", ("something", "Something")),
]
ORDINARY_WINDOWS = [
    XEDIT, XCALC,
    WindowInfo(9, "Terminal tips - Mozilla Firefox", ("Navigator", "firefox")),
    WindowInfo(10, "john@example.com - Inbox", ("mail", "Thunderbird")),
    WindowInfo(11, "Stats", ("statistics", "Statistics")),
]


@pytest.mark.parametrize("window", COMMAND_WINDOWS, ids=lambda w: w.title or w.wm_class[0])
def test_typing_into_a_terminal_or_run_dialog_needs_approval(window: WindowInfo) -> None:
    policy = Policy(windows=FakeWindowProbe(focus=window))
    review = policy.review(typing("ls -la"), None)
    assert categories(review.approvals) == [Category.TERMINAL_TYPING]


@pytest.mark.parametrize("window", ORDINARY_WINDOWS, ids=lambda w: w.title)
def test_typing_into_an_ordinary_window_passes(window: WindowInfo) -> None:
    assert Policy(windows=FakeWindowProbe(focus=window)).review(typing("ls -la"), None).ok


@pytest.mark.parametrize("chord", ["enter", "ctrl+enter", "ctrl+j", "ctrl+m", "ctrl+shift+v",
                                   "shift+insert"])
def test_keys_that_run_or_paste_in_a_terminal_need_approval(chord: str) -> None:
    review = Policy(windows=FakeWindowProbe(focus=XTERM)).review(key(chord), None)
    assert categories(review.approvals) == [Category.TERMINAL_TYPING]
    assert Policy(windows=FakeWindowProbe(focus=XEDIT)).review(key(chord), None).ok


def test_other_keys_in_a_terminal_pass() -> None:
    policy = Policy(windows=FakeWindowProbe(focus=XTERM))
    for chord in ("up", "tab", "ctrl+c", "esc", "ctrl+a"):
        assert policy.review(key(chord), None).ok


def test_a_middle_click_on_a_terminal_pastes_into_it() -> None:
    probe = FakeWindowProbe(windows=[((0, 0, 640, 800), XTERM), ((640, 0, 1280, 800), XEDIT)])
    policy = Policy(windows=probe)
    review = policy.review(click(100, 100, button="middle"), None)
    assert categories(review.approvals) == [Category.TERMINAL_TYPING]
    assert policy.review(click(100, 100), None).ok
    assert policy.review(click(900, 100, button="middle"), None).ok


def test_typing_without_a_readable_focus_asks() -> None:
    probe = FakeWindowProbe(focus=XEDIT)
    probe.error = WindowProbeError("display gone")
    review = Policy(windows=probe).review(typing("hello"), None)
    assert categories(review.approvals) == [Category.TERMINAL_TYPING]
    assert "display gone" in review.approvals[0].reason


# --- Sensitive clicks ---------------------------------------------------------------------------

DIALOG = [
    line("Delete", (600, 400, 660, 420)),
    line("Cancel", (500, 400, 560, 420)),
]


def test_a_click_on_delete_needs_approval() -> None:
    reader = FakeReader(DIALOG)
    review = Policy(reader=reader).review(click(630, 410), blank_frame())
    assert categories(review.approvals) == [Category.SENSITIVE_CLICKS]
    assert "Delete" in review.approvals[0].reason
    assert reader.calls, "the text around the click was read"


def test_a_click_on_cancel_next_to_delete_passes() -> None:
    assert Policy(reader=FakeReader(DIALOG)).review(click(530, 410), blank_frame()).ok


def test_a_click_on_an_icon_takes_the_nearest_label() -> None:
    reader = FakeReader([line("Remove", (700, 430, 760, 442)), line("Open", (800, 430, 840, 442))])
    review = Policy(reader=reader).review(click(730, 415), blank_frame())
    assert categories(review.approvals) == [Category.SENSITIVE_CLICKS]


@pytest.mark.parametrize("text", ["Send", "Pay now", "Buy", "Place order", "Submit",
                                  "Confirm purchase", "Install", "Uninstall", "sudo",
                                  "Authorize", "Authorise app", "Transfer", "Format disk",
                                  "Erase", "Move to Trash", "Log Out", "Shut Down"])
def test_consequential_labels_need_approval(text: str) -> None:
    reader = FakeReader([line(text, (600, 400, 700, 420))])
    review = Policy(reader=reader).review(click(650, 410), blank_frame())
    assert categories(review.approvals) == [Category.SENSITIVE_CLICKS]


@pytest.mark.parametrize("text", ["Cancel", "Save", "Open", "Sign in", "Sort order",
                                  "Deleted items", "Sender", "Installed apps", "PayPal", "7",
                                  "sqrt"])
def test_everyday_labels_pass(text: str) -> None:
    reader = FakeReader([line(text, (600, 400, 700, 420))])
    assert Policy(reader=reader).review(click(650, 410), blank_frame()).ok


def test_ok_takes_its_meaning_from_the_dialog() -> None:
    frame = blank_frame()
    asks_delete = FakeReader([line("Delete 3 files permanently?", (500, 300, 760, 320)),
                              line("OK", (640, 400, 670, 420))])
    review = Policy(reader=asks_delete).review(click(655, 410), frame)
    assert categories(review.approvals) == [Category.SENSITIVE_CLICKS]
    asks_nothing = FakeReader([line("The calculation is complete.", (500, 300, 760, 320)),
                               line("OK", (640, 400, 670, 420))])
    assert Policy(reader=asks_nothing).review(click(655, 410), frame).ok


def test_the_models_target_words_add_concern_even_when_ocr_reads_nothing() -> None:
    resolved = click(630, 410, target="the delete button")
    for policy, frame in ((Policy(reader=FakeReader([])), blank_frame()), (Policy(), None)):
        review = policy.review(resolved, frame)
        assert categories(review.approvals) == [Category.SENSITIVE_CLICKS]
        assert "delete" in review.approvals[0].reason


def test_the_models_target_words_never_remove_concern() -> None:
    resolved = click(630, 410, target="the cancel button")
    review = Policy(reader=FakeReader(DIALOG)).review(resolved, blank_frame())
    assert categories(review.approvals) == [Category.SENSITIVE_CLICKS]


def test_a_drag_is_judged_where_it_drops() -> None:
    reader = FakeReader([line("Trash", (1000, 700, 1060, 720))])
    drag = resolve(Drag(action="drag", box=at(200, 200), to_box=at(1030, 710)))
    review = Policy(reader=reader).review(drag, blank_frame())
    assert categories(review.approvals) == [Category.SENSITIVE_CLICKS]


def test_hidpi_and_offset_monitors_map_points_to_pixels() -> None:
    # A 2x monitor left of the primary: point (-1000, 100) is pixel (560, 200) of its frame.
    screen = ScreenGeometry(-1280, 0, 1280, 800, scale=2.0, index=2)
    reader = FakeReader([line("Delete", (530, 190, 590, 210))])
    resolved = Resolved(action=Click(action="click", box=(0.2, 0.1, 0.2, 0.1)),
                        points=(Point(-1000, 100),))
    review = Policy(reader=reader).review(resolved, blank_frame(screen))
    assert categories(review.approvals) == [Category.SENSITIVE_CLICKS]
    x1, y1, x2, y2 = reader.calls[0] or (0, 0, 0, 0)
    assert x1 < 560 < x2 and y1 < 200 < y2
    assert x2 - x1 > 2 * 200  # the read area is sized in points, so it doubles in pixels


def test_an_unreadable_click_asks() -> None:
    class Broken(FakeReader):
        def read(self, rgb: np.ndarray, region: PixelBox | None = None) -> list[TextLine]:
            raise OcrError("engine exploded")

    review = Policy(reader=Broken([])).review(click(630, 410), blank_frame())
    assert categories(review.approvals) == [Category.SENSITIVE_CLICKS]


# --- Secrets ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    AWS_KEY, f"export AWS_ACCESS_KEY_ID={AWS_KEY}", GITHUB_TOKEN, OPENAI_KEY, JWT, PRIVATE_KEY,
    RANDOM_TOKEN, f"the key is {RANDOM_TOKEN}.", "xoxb-" + "123456789012-abcdefABCDEF",
    "d5da79e1-d2b0-4d41-95bd-edf3d17f47ec",
])
def test_secret_looking_text_needs_approval(text: str) -> None:
    review = Policy().review(typing(text), None)
    assert categories(review.approvals) == [Category.SECRET_TYPING]
    assert text.strip() not in review.approvals[0].reason  # never the secret itself


@pytest.mark.parametrize("text", [
    "hello world", "report.pdf", "The quick brown fox jumps over the lazy dog, twice in 2024.",
    "Quarterly_Report_2024_final.pdf", "/home/user/Documents/Projects2024/notes.txt",
    "https://www.example.com/Search?q=Weather2024", "john.doe.1985@example.com",
    "MeetingNotes_2024-06-15_v2.docx", "Screenshot_from_2024-06-15_12-30-45.png",
    "IMG_20240615_123456.jpg", "internationalization", "12+34*56", "x86_64-linux-gnu-gcc-12.2.0",
])
def test_ordinary_text_passes(text: str) -> None:
    assert Policy().review(typing(text), None).ok
    assert secret_spans(text) == []


def test_secrets_the_task_supplied_pass() -> None:
    policy = Policy(task_text=[f"log in with {GITHUB_TOKEN}", RANDOM_TOKEN])
    assert policy.review(typing(GITHUB_TOKEN), None).ok
    assert policy.review(typing(f"token={RANDOM_TOKEN}"), None).ok
    review = policy.review(typing(OPENAI_KEY), None)
    assert categories(review.approvals) == [Category.SECRET_TYPING]


# --- Allow, region, windows ---------------------------------------------------------------------

def test_allow_drops_approvals_but_never_refusals() -> None:
    everything = frozenset(c.value for c in APPROVAL_CATEGORIES)
    policy = Policy(allow=everything, scope=Scope(region=(0, 0, 640, 800)),
                    reader=FakeReader(DIALOG), windows=FakeWindowProbe(focus=XTERM))
    assert policy.review(key("ctrl+alt+delete"), None).ok
    assert policy.review(typing(AWS_KEY), None).ok
    outside = policy.review(click(630 + 100, 410, target="delete"), blank_frame())
    assert categories(outside.refusals) == [Category.OUT_OF_REGION]
    assert outside.approvals == ()


def test_allow_drops_only_the_named_category() -> None:
    policy = Policy(allow={"sensitive_keys"}, windows=FakeWindowProbe(focus=XTERM))
    assert policy.review(key("ctrl+alt+t"), None) == Review()
    assert categories(policy.review(key("enter"), None).approvals) == [Category.TERMINAL_TYPING]


@pytest.mark.parametrize("name", ["out_of_region", "out_of_window", "focus_changed", "anything"])
def test_refusals_and_unknown_names_cannot_be_allowed(name: str) -> None:
    with pytest.raises(ValueError, match="cannot allow"):
        Policy(allow={name})


def test_pointer_actions_outside_the_region_are_refused() -> None:
    policy = Policy(scope=Scope(region=(100, 100, 500, 400)))
    assert policy.review(click(100, 100), None).ok
    assert policy.review(click(499, 399), None).ok
    for resolved in (click(500, 200), click(99, 200), click(200, 400),
                     resolve(Move(action="move", box=at(600, 200))),
                     resolve(Scroll(action="scroll", box=at(50, 50), direction="down")),
                     resolve(Drag(action="drag", box=at(200, 200), to_box=at(700, 200)))):
        review = policy.review(resolved, None)
        assert categories(review.refusals) == [Category.OUT_OF_REGION], resolved
    assert policy.review(typing("hello"), None).ok  # keyboard input has no point to check


def test_bad_scopes_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="x1 < x2"):
        Scope(region=(10, 10, 10, 20))
    with pytest.raises(ValueError, match="regular expression"):
        Scope(windows=("/[unclosed/",))
    with pytest.raises(ValueError, match="empty"):
        Scope(windows=("//",))
    with pytest.raises(ValueError, match="probe"):
        Policy(scope=Scope(windows=("xcalc",)))


WINDOWS = [((0, 0, 640, 800), XCALC), ((640, 0, 1280, 800), XEDIT)]


@pytest.mark.parametrize("pattern", ["xcalc", "CALCULATOR", "/^xcalc$/", "/calc.*/"])
def test_window_scope_checks_the_window_under_each_point(pattern: str) -> None:
    policy = Policy(scope=Scope(windows=(pattern,)), windows=FakeWindowProbe(windows=WINDOWS))
    assert policy.review(click(100, 100), None).ok
    review = policy.review(click(900, 100), None)
    assert categories(review.refusals) == [Category.OUT_OF_WINDOW]
    assert "Xedit" in review.refusals[0].reason
    drag = resolve(Drag(action="drag", box=at(100, 100), to_box=at(900, 100)))
    assert categories(policy.review(drag, None).refusals) == [Category.OUT_OF_WINDOW]


def test_window_scope_checks_the_focused_window_for_keys() -> None:
    probe = FakeWindowProbe(focus=XCALC, windows=WINDOWS)
    policy = Policy(scope=Scope(windows=("xcalc",)), windows=probe)
    assert policy.review(typing("12"), None).ok
    probe.focus = XEDIT
    assert categories(policy.review(typing("12"), None).refusals) == [Category.OUT_OF_WINDOW]
    assert categories(policy.review(key("enter"), None).refusals) == [Category.OUT_OF_WINDOW]
    probe.focus = None
    assert categories(policy.review(typing("12"), None).refusals) == [Category.OUT_OF_WINDOW]


def test_window_scope_fails_closed() -> None:
    probe = FakeWindowProbe(focus=XCALC, windows=WINDOWS)
    policy = Policy(scope=Scope(windows=("xcalc",)), windows=probe)
    over_nothing = Resolved(Click(action="click", box=at(5, 5)), points=(Point(2000, 5),))
    assert categories(policy.review(over_nothing, None).refusals) == [Category.OUT_OF_WINDOW]
    probe.error = WindowProbeError("connection lost")
    review = policy.review(click(100, 100), None)
    assert categories(review.refusals) == [Category.OUT_OF_WINDOW]
    assert "connection lost" in review.refusals[0].reason


# --- Focus --------------------------------------------------------------------------------------

def test_focus_change_between_deciding_and_typing_is_caught() -> None:
    probe = FakeWindowProbe(focus=XEDIT)
    policy = Policy(windows=probe)
    token = policy.focus_token()
    assert token == XEDIT.id
    assert policy.check_focus(token) is None
    probe.focus = XTERM
    concern = policy.check_focus(token)
    assert concern is not None and concern.category is Category.FOCUS_CHANGED
    assert "xterm" in concern.reason.lower()
    probe.focus = None
    assert policy.check_focus(token) is not None
    assert policy.check_focus(policy.focus_token()) is None  # "no focus" both times


def test_focus_checks_fail_closed_and_need_a_probe() -> None:
    assert Policy().focus_token() is None
    assert Policy().check_focus(None) is None
    probe = FakeWindowProbe(focus=XEDIT)
    policy = Policy(windows=probe)
    probe.error = WindowProbeError("gone")
    token = policy.focus_token()
    probe.error = None
    assert policy.check_focus(token) is not None  # unknown then: never accepted
    token = policy.focus_token()
    probe.error = WindowProbeError("gone")
    concern = policy.check_focus(token)
    assert concern is not None and concern.category is Category.FOCUS_CHANGED


# --- Approvers ----------------------------------------------------------------------------------

CONCERN = Concern(Category.SENSITIVE_KEYS, "ctrl+alt+delete can log out")


def test_deny_all_denies() -> None:
    assert DenyAll().approve(CONCERN, "key ctrl+alt+delete") is False


def test_policy_denied_carries_the_concern() -> None:
    exc = PolicyDenied(CONCERN)
    assert exc.concern is CONCERN and "sensitive_keys" in str(exc)


def test_terminal_approver_without_a_terminal_denies(tmp_path: Path) -> None:
    assert TerminalApprover(str(tmp_path / "no-such-tty")).approve(CONCERN, "key") is False
    regular = tmp_path / "file"
    regular.write_text("y\n", encoding="utf-8")
    assert TerminalApprover(str(regular)).approve(CONCERN, "key") is False


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """A pseudo-terminal: the master end (the person's side) and the slave's path."""
    master, slave = os.openpty()
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def answer_when_asked(master: int, answer: bytes, seen: list[bytes]) -> threading.Thread:
    """Type ``answer`` on the terminal once the question has appeared on it."""
    def run() -> None:
        data = b""
        deadline = time.monotonic() + 10
        while b"[y/N]" not in data and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                data += os.read(master, 4096)
        seen.append(data)
        os.write(master, answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("answer", "approved"), [
    (b"y\n", True), (b"yes\n", True), (b"Y\n", True), (b"  yes \n", True),
    (b"yes please\n", False), (b"n\n", False), (b"\n", False), (b"no\n", False),
    (b"yy\n", False), (b"ok\n", False),
])
def test_terminal_approver_takes_only_y_or_yes(pty: tuple[int, str], answer: bytes,
                                               approved: bool) -> None:
    master, path = pty
    seen: list[bytes] = []
    thread = answer_when_asked(master, answer, seen)
    assert TerminalApprover(path, timeout_s=10).approve(CONCERN, "key ctrl+alt+delete") \
        is approved
    thread.join(5)
    assert b"ctrl+alt+delete can log out" in seen[0]


def test_terminal_approver_ignores_typed_ahead_answers_and_times_out(
        pty: tuple[int, str]) -> None:
    master, path = pty
    os.write(master, b"y\n")  # typed before the question: must not answer it
    started = time.monotonic()
    assert TerminalApprover(path, timeout_s=0.3).approve(CONCERN, "key") is False
    assert time.monotonic() - started < 5


def test_terminal_approver_shows_no_escape_sequences(pty: tuple[int, str]) -> None:
    master, path = pty
    seen: list[bytes] = []
    thread = answer_when_asked(master, b"n\n", seen)
    concern = Concern(Category.SENSITIVE_CLICKS, 'the click lands on "\x1b[2JDelete"')
    assert TerminalApprover(path, timeout_s=10).approve(concern, "click \x1b]0;pwned\x07") \
        is False
    thread.join(5)
    assert b"\x1b" not in seen[0] and b"\x07" not in seen[0]
