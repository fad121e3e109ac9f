"""The safety policy: what an action may not do at all, and what needs the person's approval.

:meth:`Policy.review` looks at a validated action *before* any input is sent and answers with
refusals (out of the task's region or windows: never carried out, whatever anyone says) and
approvals (sensitive actions that only the person may let through, or the task file's ``allow``
list). Approval must come from the person, out of band: a terminal prompt or the TUI, never an
answer produced by the model and never text read off the screen. Screen text and the model's own
words can only *add* concern here, never remove it.

The checks are heuristics that fail towards asking: a false alarm costs a prompt (or, headless,
a denied step the task can ``allow``); a miss can cost a deleted file or a sent message.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from deskpilot.actions.categories import APPROVAL_CATEGORIES, Category
from deskpilot.actions.labels import Element, affirmative, consequential, elements, guessed
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.secrets import secret_spans
from deskpilot.actions.text import shorten
from deskpilot.actions.types import AnyAction, Click, Drag, Hold, Key, Type
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import PixelBox, Point
from deskpilot.grounding.ocr import OcrError, TextLine, TextReader, box_centre_inside, clip_region
from deskpilot.grounding.windows import WindowInfo, WindowProbe, WindowProbeError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Concern:
    """One reason to stop an action; ``reason`` is one line written for the person."""

    category: Category
    reason: str


@dataclass(frozen=True, slots=True)
class KnownText:
    """What the step that grounded a click already knows of the text there, so the gate does
    not read the same pixels again.

    ``lines`` are every line read inside ``area`` (frame pixels) on the frame the click was
    decided on. ``label`` is the clicked element's own name when the accessibility tree gave
    it (then it is the label judged), ``role`` its role, and ``dialog`` the texts of that
    element's window (then they are the dialog an affirmative answers). Whatever ``area`` does
    not cover is read.
    """

    lines: tuple[TextLine, ...] = ()
    area: PixelBox = (0, 0, 0, 0)
    label: str | None = None
    dialog: tuple[str, ...] | None = None
    role: str | None = None  # the element's accessible role, when the tree gave the label

    def covers(self, region: PixelBox) -> bool:
        """Whether every line in ``region`` is among :attr:`lines`."""
        a = self.area
        return a[0] <= region[0] and a[1] <= region[1] and region[2] <= a[2] \
            and region[3] <= a[3]

    def lines_in(self, region: PixelBox) -> list[TextLine]:
        """The known lines centred in ``region``."""
        return [line for line in self.lines if box_centre_inside(line.box, region)]


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a task may act.

    ``region`` is a rectangle in screen points (x2 and y2 exclusive) that every pointer target
    must lie in. ``windows`` are patterns, any of which the window under a pointer target (or,
    for typing and keys, the focused window) must match: a plain pattern matches as a
    case-insensitive substring of the title or of either WM_CLASS part; ``/.../`` is a regular
    expression searched case-insensitively in the same places.
    """

    region: PixelBox | None = None
    windows: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.region is not None:
            x1, y1, x2, y2 = self.region
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"scope region must be [x1, y1, x2, y2] with x1 < x2 and "
                                 f"y1 < y2, got {list(self.region)}")
        for pattern in self.windows:
            _compile_window_pattern(pattern)  # raises ValueError for a bad or empty pattern

    def allows_point(self, point: Point) -> bool:
        """Whether the point lies inside the region (always, without a region)."""
        if self.region is None:
            return True
        x1, y1, x2, y2 = self.region
        return x1 <= point.x < x2 and y1 <= point.y < y2

    def allows_window(self, window: WindowInfo) -> bool:
        """Whether the window matches one of the patterns (always, without patterns)."""
        if not self.windows:
            return True
        texts = (window.title, *window.wm_class)
        return any(_compile_window_pattern(p).search(t) for p in self.windows for t in texts)


@lru_cache(maxsize=256)
def _compile_window_pattern(pattern: str) -> re.Pattern[str]:
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        body = pattern[1:-1]
        if not body:
            raise ValueError("window pattern '//' is empty: it would match every window")
        try:
            return re.compile(body, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"window pattern {pattern!r} is not a valid regular expression: "
                             f"{exc}") from None
    if not pattern.strip():
        raise ValueError("window pattern is empty: it would match every window")
    return re.compile(re.escape(pattern), re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Review:
    """What the policy found: refusals (never carried out) and approvals still needed."""

    refusals: tuple[Concern, ...] = ()
    approvals: tuple[Concern, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing is refused and nothing needs approval."""
        return not self.refusals and not self.approvals


class PolicyDenied(Exception):
    """For callers that stop with an exception: the policy or the person said no."""

    def __init__(self, concern: Concern) -> None:
        super().__init__(f"{concern.category.value}: {concern.reason}")
        self.concern = concern


# ---------------------------------------------------------------------------------------------
# Sensitive keys. Chords are sets of canonical names (actions.keys); a rule matches when all its
# keys are pressed together, so extra modifiers do not slip past it (ctrl+alt+shift+delete).

_VT_SWITCH = "switches to a text console (leaves the desktop session)"
_KEY_RULES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"ctrl", "alt", "delete"}), "can log out, reboot or open a task manager"),
    (frozenset({"ctrl", "alt", "backspace"}), "can kill the X server and every open program"),
    *((frozenset({"ctrl", "alt", f"f{n}"}), _VT_SWITCH) for n in range(1, 13)),
    (frozenset({"alt", "printscreen"}), "is the magic SysRq prefix (reboot, kill all programs)"),
    (frozenset({"ctrl", "alt", "t"}), "opens a terminal on many desktops"),
    (frozenset({"ctrl", "alt", "l"}), "locks the screen on many desktops"),
    (frozenset({"ctrl", "alt", "esc"}), "turns the pointer into a window killer (KDE xkill)"),
    (frozenset({"alt", "f1"}), "opens the application launcher"),
    (frozenset({"alt", "f2"}), "opens the run-a-command dialog"),
    (frozenset({"alt", "f4"}), "closes the window, possibly losing unsaved work"),
    (frozenset({"ctrl", "q"}), "quits the whole application, possibly losing unsaved work"),
    # Closing chords (docs/reliability.md says why each one is here).
    (frozenset({"ctrl", "shift", "w"}), "closes the whole window with every tab in it"),
    (frozenset({"ctrl", "w"}), "closes the tab or document, possibly losing unsaved work"),
    (frozenset({"ctrl", "f4"}), "closes the tab or document, possibly losing unsaved work"),
    (frozenset({"alt", "space"}), "opens the window menu (close, kill, move off screen)"),
    (frozenset({"ctrl", "shift", "esc"}), "opens a task manager that ends any program"),
    (frozenset({"shift", "delete"}), "deletes permanently in file managers (skips the trash)"),
)
# The super key belongs to the desktop shell by convention (apps almost never bind it): alone it
# opens the launcher, with a key it locks (super+l), runs (super+r), opens terminals or logs out.
_WIN_REASON = "is a desktop shortcut (launcher, lock, run dialog, terminals, log out)"


def _chord_concern(pressed: frozenset[str], chord: str) -> Concern | None:
    if "win" in pressed:
        return Concern(Category.SENSITIVE_KEYS, f"{chord}: the super key {_WIN_REASON}")
    for keys, reason in _KEY_RULES:
        if keys <= pressed:
            return Concern(Category.SENSITIVE_KEYS, f"{chord} {reason}")
    return None


def _pressed(resolved: Resolved) -> tuple[frozenset[str], str]:
    """All keys down at once for a key or hold action, and the chord as text."""
    keys = (*resolved.hold, *(k for k in resolved.keys if k not in resolved.hold))
    return frozenset(keys), "+".join(keys)


# In a terminal, Return runs the command line, and so do ctrl+j and ctrl+m (line feed and
# carriage return); a paste runs every full line it holds. Like the key rules these match when
# all their keys are pressed, whatever else is: alt+shift+insert pastes as shift+insert does.
# ctrl+v pastes in many terminals (kitty, Windows Terminal, configured ones).
_TERMINAL_RUN_CHORDS = (frozenset({"ctrl", "j"}), frozenset({"ctrl", "m"}))
_TERMINAL_PASTE_CHORDS = (frozenset({"ctrl", "shift", "v"}), frozenset({"shift", "insert"}),
                          frozenset({"ctrl", "v"}))
_TEXTLESS_MODIFIERS = frozenset({"ctrl", "alt", "win"})  # with one of these, a key types nothing


def key_text(resolved: Resolved) -> str:
    """The text a key or hold action types: printable keys and space, enter as a newline;
    nothing for chords with ctrl, alt or super (shift only changes letters' case)."""
    pressed = frozenset(resolved.hold) | frozenset(resolved.keys)
    if pressed & _TEXTLESS_MODIFIERS:
        return ""
    shifted = "shift" in pressed
    out = []
    for name in resolved.keys:
        if name in resolved.hold:
            continue
        if name == "space":
            out.append(" ")
        elif name == "enter":
            out.append("\n")
        elif len(name) == 1:
            out.append(name.upper() if shifted else name)
    return "".join(out)

# ---------------------------------------------------------------------------------------------
# Terminals and run dialogs, told by WM_CLASS (either part) or title.

_TERMINALS = frozenset({
    "xterm", "uxterm", "rxvt", "urxvt", "gnome-terminal", "konsole", "xfce4-terminal",
    "alacritty", "kitty", "terminator", "tilix", "wezterm", "org.wezfurlong.wezterm", "foot",
    "footclient", "st", "st-256color", "lxterminal", "mate-terminal", "qterminal",
    "terminology", "sakura", "guake", "tilda", "yakuake", "eterm", "aterm", "mlterm", "kterm",
    "cool-retro-term", "hyper", "tabby", "deepin-terminal", "ptyxis", "org.gnome.ptyxis", "kgx",
    "org.gnome.console", "blackbox", "com.raggesilver.blackbox", "contour", "ghostty",
    "com.mitchellh.ghostty", "dev.warp.warp", "roxterm", "termite", "zutty", "x-terminal-emulator",
})
_RUN_DIALOGS = frozenset({
    "krunner", "gmrun", "dmenu", "rofi", "wofi", "fuzzel", "tofi", "bemenu", "xfce4-appfinder",
    "xfrun4", "lxqt-runner", "grun", "ulauncher", "albert", "synapse", "kupfer",
})
_RUN_TITLES = re.compile(r"^(run|run application|run command|run a command|execute command|"
                         r"application finder)$", re.IGNORECASE)
# Shells set the title to "user@host: dir" (bash's default PROMPT_COMMAND, zsh themes).
_PROMPT_TITLE = re.compile(r"^[\w.-]+@[\w.-]+:")


# A shell prompt on the screen: "user@host:~/dir$", a line ending in a prompt character after
# nothing or a path, or "$ command" at a line's start; ">>>" is a Python prompt (it runs code).
_SHELL_PROMPT = re.compile(
    r"[\w.-]+@[\w.-]+(?:[:\s]\s*[~/]\S*)?\s?[$#%>]"
    r"|^\s*(?:[~/][\w./~-]*\s?)?[$#%>\u276f\u279c]\s*$"
    r"|^\s*[$%\u276f\u279c]\s+\S"
    r"|^\s*(?:>>>|PS [A-Z]:\\\S*>)")


# A prompt character alone: a bare shell prompt, or a toolbar's percent or currency button.
# A prompt is the last thing on its row (the cursor follows it); a button has neighbours.
_LONE_SIGIL = re.compile(r"^\s*[$#%>\u276f\u279c]\s*$")


def _followed(line: TextLine, lines: Sequence[TextLine]) -> bool:
    """Whether another line stands to the right of ``line`` on the same row."""
    _, y1, x2, y2 = line.box
    return any(other is not line and other.box[0] >= x2
               and min(y2, other.box[3]) - max(y1, other.box[1]) >= (y2 - y1) / 2
               for other in lines)


def shows_prompt(text: str) -> bool:
    """Whether one line of screen text looks like a shell (or REPL) prompt."""
    return bool(_SHELL_PROMPT.search(text))


def _command_window(window: WindowInfo) -> str | None:
    """'a terminal (...)' or 'a run dialog (...)' when typed text there runs commands."""
    label = window.wm_class[-1] if window.wm_class else window.title
    for part in window.wm_class:
        name = part.lower()
        tokens = [t for t in re.split(r"[^a-z0-9]+", name) if t]
        if name in _RUN_DIALOGS or any(t in _RUN_DIALOGS for t in tokens):
            return f"a run dialog ({label})"
        if name in _TERMINALS or any(t in _TERMINALS or t.endswith("term") for t in tokens) \
                or "terminal" in name:
            return f"a terminal ({label})"
    if _RUN_TITLES.match(window.title.strip()):
        return f"a run dialog ({window.title.strip()})"
    if _PROMPT_TITLE.match(window.title):
        return f"a terminal ({_one_line(window.title, 40)})"
    return None


# ---------------------------------------------------------------------------------------------
# Sensitive clicks: the label of the clicked element, judged by the word lists of
# actions/labels.py (data/labels.json: what spends, sends, publishes, destroys, overwrites,
# grants rights, changes the system or ends the session, in eight languages). Left out on
# purpose: "sign in" and "log in" (by itself a login spends, sends or destroys nothing, and the
# credentials typed for it are checked as secrets), "save" and "open" (everyday and undoable),
# "order" alone ("Sort order").

# Half-sizes, in screen points, of the area read around a click, and of the wider area read for
# the dialog around an affirmative button.
# Accessible roles whose click opens a menu and does nothing else (a menu bar's "Format" or
# "Delete" menu): their names are not judged as the label of an act. Nor is a menu item's
# name that ends in an ellipsis: by every desktop's interface guidelines it opens a dialog
# that asks before anything is done (the dialog's own button is judged then). A push button's
# ellipsis is not trusted: any program can label its buttons.
OPENS_A_MENU = frozenset({"menu"})
OPENS_A_DIALOG = frozenset({"menu item"})
_ELLIPSIS = ("...", "\N{HORIZONTAL ELLIPSIS}")


def _opens_only(known: KnownText) -> bool:
    """Whether the clicked element (named by the accessibility tree) only opens a menu or a
    dialog, so its name says nothing about an act."""
    label = (known.label or "").strip()
    return known.role in OPENS_A_MENU or (known.role in OPENS_A_DIALOG
                                          and label.endswith(_ELLIPSIS))
CLICK_READ = (120, 24)
DIALOG_READ = (320, 160)
_ON_TEXT_MARGIN = 4  # points around a text box that still count as clicking on it

# ---------------------------------------------------------------------------------------------


class Policy:
    """Reviews resolved actions against a task's scope and the sensitive-action rules.

    ``allow`` names approval categories (:data:`APPROVAL_CATEGORIES`, a task file's ``allow:``
    list) whose concerns are dropped; refusals cannot be allowed. ``reader`` reads the text
    around a click (without one, only the model's own ``target`` words are checked).
    ``windows`` answers which window is focused or under a point: without it, window scope
    cannot be enforced (a scope with ``windows`` then raises ValueError here), terminals are
    not recognised and :meth:`focus_token` is None.

    ``task_text`` holds what the person's task itself supplies: the task prompt, the literal
    text of ``type:`` steps and the values of task variables (secret ones included). Typing a
    secret-looking part that occurs in one of them was asked for; any other secret-looking text
    (a key the model read off the screen, say) needs SECRET_TYPING approval. The values are
    kept in memory only and never appear in a concern.
    """

    def __init__(self, *, scope: Scope = Scope(), allow: Iterable[str] = frozenset(),
                 reader: TextReader | None = None, windows: WindowProbe | None = None,
                 task_text: Iterable[str] = ()) -> None:
        allowed = frozenset(allow)
        names = {c.value for c in APPROVAL_CATEGORIES}
        if bad := sorted(allowed - names):
            raise ValueError(f"cannot allow {', '.join(bad)}: the allow list takes "
                             f"{', '.join(sorted(names))} (refusals cannot be allowed)")
        if scope.windows and windows is None:
            raise ValueError("a scope with window patterns needs a window probe to check them")
        self.scope = scope
        self.allow = frozenset(Category(name) for name in allowed)
        self.reader = reader
        self.windows = windows
        self._task_text = tuple(t for t in task_text if t)
        self._typed: dict[int, str] = {}

    def typed(self, window: int) -> str:
        """The end of what this policy let through as text into ``window`` (a window id; 0 for
        no window), across steps: typed text and the text that single keys produce."""
        return self._typed.get(window, "")

    def note_sent(self, resolved: Resolved, window: int | None) -> None:
        """Remember the text an allowed action sends to ``window`` (the focus when decided).

        Called by the gate once the action may run, so that text split over several actions
        (type chunks, one key at a time) is judged as a whole the next time.
        """
        action = resolved.action
        text = action.text if isinstance(action, Type) else \
            key_text(resolved) if isinstance(action, Key | Hold) else ""
        key = 0 if window is None else window  # without a probe every text goes to "0"
        if text and key != _UNKNOWN_FOCUS:
            self._typed[key] = (self._typed.get(key, "") + text)[-TYPED_MEMORY:]

    def review(self, resolved: Resolved, frame: Frame | None,
               known: KnownText | None = None) -> Review:
        """Refusals and approvals for one action, decided before any input is sent.

        ``frame`` is the screenshot the action was decided on; the text around a click is read
        from it, except what ``known`` already holds. Window-system errors fail closed: a
        refusal when the scope names windows, an approval when the focus cannot be told before
        typing.
        """
        review = _Reviewer(self, resolved, frame, known)
        refusals = review.refusals()
        approvals = [c for c in review.approvals() if c.category not in self.allow]
        seen: set[Category] = set()
        unique = []
        for concern in approvals:  # one question per category is enough for the person
            if concern.category not in seen:
                seen.add(concern.category)
                unique.append(concern)
        return Review(tuple(refusals), tuple(unique))

    def focus_token(self) -> int | None:
        """The focused window now, to compare later; None without a window probe.

        0 stands for "no window has the focus", -1 for "the focus could not be read" (which
        :meth:`check_focus` never accepts).
        """
        if self.windows is None:
            return None
        try:
            window = self.windows.focused()
        except WindowProbeError as exc:
            log.warning("cannot read the focus: %s", exc)
            return _UNKNOWN_FOCUS
        return 0 if window is None else window.id

    def check_focus(self, token: int | None) -> Concern | None:
        """FOCUS_CHANGED when the focus left where it was at ``token``; call just before typing."""
        if self.windows is None or token is None:
            return None
        try:
            window = self.windows.focused()
        except WindowProbeError as exc:
            return Concern(Category.FOCUS_CHANGED, f"cannot tell which window has the focus "
                                                   f"now ({exc})")
        if token == _UNKNOWN_FOCUS:
            return Concern(Category.FOCUS_CHANGED, "the focus could not be read when the action "
                                                   "was decided")
        now = 0 if window is None else window.id
        if now != token:
            where = "no window" if window is None else _describe_window(window)
            return Concern(Category.FOCUS_CHANGED, f"the keyboard focus moved to {where} since "
                                                   "the action was decided")
        return None

    def supply(self, text: str) -> None:
        """Count ``text`` as supplied by the task from now on (a caller typing it itself)."""
        if text:
            self._task_text += (text,)

    def supplied_by_task(self, part: str) -> bool:
        """Whether ``part`` occurs in the text the task itself supplies (see the class notes)."""
        return any(part in text for text in self._task_text)


_UNKNOWN_FOCUS = -1
TYPED_MEMORY = 512  # characters of typed text remembered per window


class _Reviewer:
    """The checks for one action; looks the focused window up at most once."""

    def __init__(self, policy: Policy, resolved: Resolved, frame: Frame | None,
                 known: KnownText | None = None) -> None:
        self.policy = policy
        self.resolved = resolved
        self.action: AnyAction = resolved.action
        self.frame = frame
        self.known = known
        self._focus: tuple[WindowInfo | None, str | None] | None = None

    def _wants(self, category: Category) -> bool:
        return category not in self.policy.allow

    def focused(self) -> tuple[WindowInfo | None, str | None]:
        """(the focused window, None) or (None, the error that hid it)."""
        if self._focus is None:
            probe = self.policy.windows
            try:
                self._focus = (None if probe is None else probe.focused(), None)
            except WindowProbeError as exc:
                self._focus = (None, str(exc))
        return self._focus

    def refusals(self) -> list[Concern]:
        scope = self.policy.scope
        out = [Concern(Category.OUT_OF_REGION,
                       f"({p.x}, {p.y}) is outside the task's region {list(scope.region or ())}")
               for p in self.resolved.points if not scope.allows_point(p)]
        if not scope.windows:
            return out
        probe = self.policy.windows
        if probe is None:  # Policy.__init__ refuses window patterns without a probe
            raise RuntimeError("window scope without a window probe")
        for p in self.resolved.points:
            try:
                window, error = probe.under(p.x, p.y), None
            except WindowProbeError as exc:
                window, error = None, str(exc)
            out.extend(self._window_scope(window, error, f"under ({p.x}, {p.y})"))
        if not self.resolved.points and isinstance(self.action, Type | Key | Hold):
            out.extend(self._window_scope(*self.focused(), "focused"))
        return out

    def _window_scope(self, window: WindowInfo | None, error: str | None,
                      where: str) -> list[Concern]:
        if error is not None:
            return [Concern(Category.OUT_OF_WINDOW, f"cannot tell which window is {where} "
                                                    f"({error})")]
        if window is None:
            return [Concern(Category.OUT_OF_WINDOW, f"no window is {where}; the task may only "
                                                    f"act in {_patterns(self.policy.scope)}")]
        if not self.policy.scope.allows_window(window):
            return [Concern(Category.OUT_OF_WINDOW, f"the window {where} is "
                                                    f"{_describe_window(window)}; the task may "
                                                    f"only act in {_patterns(self.policy.scope)}")]
        return []

    def approvals(self) -> list[Concern]:
        action = self.action
        out: list[Concern] = []
        if isinstance(action, Key | Hold):
            pressed, chord = _pressed(self.resolved)
            if self._wants(Category.SENSITIVE_KEYS) and (c := _chord_concern(pressed, chord)):
                out.append(c)
            if self._wants(Category.TERMINAL_TYPING):
                out.extend(self._terminal_keys(pressed, chord))
            if self._wants(Category.SECRET_TYPING) and (text := key_text(self.resolved)):
                out.extend(self._secret_typing(text))
        elif isinstance(action, Type):
            if self._wants(Category.TERMINAL_TYPING):
                out.extend(self._terminal_typing())
            if self._wants(Category.SECRET_TYPING):
                out.extend(self._secret_typing(action.text))
        elif isinstance(action, Click | Drag):
            if self._wants(Category.SENSITIVE_CLICKS):
                out.extend(self._sensitive_click(action))
            if isinstance(action, Click) and action.button == "middle" \
                    and self._wants(Category.TERMINAL_TYPING):
                out.extend(self._middle_paste())
        return out

    # Typing and keys in terminals and run dialogs.

    def _command_focus(self) -> tuple[str | None, str | None]:
        """(what command window has the focus, None), or (None, why it cannot be told).

        A window not known as a terminal or run dialog counts as one when its part of the
        screen shows a shell prompt (an IDE's built-in terminal, an unlisted emulator).
        """
        if self.policy.windows is None:
            return None, None
        window, error = self.focused()
        if error is not None:
            return None, error
        if window is None:
            return None, None
        known = _command_window(window)
        if known is not None:
            return known, None
        prompt = self._prompt_in(window)
        if prompt is not None:
            label = window.wm_class[-1] if window.wm_class else _one_line(window.title, 40)
            return f'a window showing a shell prompt ("{_one_line(prompt, 40)}"; {label})', None
        return None, None

    def _prompt_in(self, window: WindowInfo) -> str | None:
        """A line in the window's part of the frame that looks like a shell prompt."""
        reader, frame = self.policy.reader, self.frame
        if reader is None or frame is None:
            return None
        screen = frame.screen
        region = None
        if window.box is not None:
            x1, y1, x2, y2 = window.box
            height, width = frame.rgb.shape[:2]
            try:
                region = clip_region((math.floor((x1 - screen.left) * screen.scale),
                                      math.floor((y1 - screen.top) * screen.scale),
                                      math.ceil((x2 - screen.left) * screen.scale),
                                      math.ceil((y2 - screen.top) * screen.scale)),
                                     width, height)
            except ValueError:
                return None  # the window is off this screen
        try:
            lines = reader.read(frame.rgb, region)
        except OcrError as exc:
            return f"unreadable: {exc}"  # fail closed: it may be a terminal
        return next((line.text for line in lines if shows_prompt(line.text)
                     and not (_LONE_SIGIL.match(line.text) and _followed(line, lines))), None)

    def _terminal_typing(self) -> list[Concern]:
        where, error = self._command_focus()
        if error is not None:
            return [Concern(Category.TERMINAL_TYPING, f"cannot tell which window has the focus "
                                                      f"({error}); it may be a terminal")]
        if where is not None:
            return [Concern(Category.TERMINAL_TYPING, f"types into {where}, where text becomes "
                                                      "a command")]
        return []

    def _terminal_keys(self, pressed: frozenset[str], chord: str) -> list[Concern]:
        runs = "enter" in self.resolved.keys or any(c <= pressed for c in _TERMINAL_RUN_CHORDS)
        pastes = any(c <= pressed for c in _TERMINAL_PASTE_CHORDS)
        text = key_text(self.resolved)
        if not (runs or pastes or text):
            return []
        where, error = self._command_focus()
        if error is not None:
            return [Concern(Category.TERMINAL_TYPING, f"{chord}: cannot tell which window has "
                                                      f"the focus ({error})")]
        if where is None:
            return []
        effect = ("runs the command line" if runs
                  else "pastes, running every line pasted" if pastes
                  else "types into the command line key by key")
        return [Concern(Category.TERMINAL_TYPING, f"{chord} in {where} {effect}")]

    def _middle_paste(self) -> list[Concern]:
        probe = self.policy.windows
        if probe is None or not self.resolved.points:
            return []
        p = self.resolved.points[0]
        try:
            window = probe.under(p.x, p.y)
        except WindowProbeError as exc:
            return [Concern(Category.TERMINAL_TYPING, f"middle click: cannot tell which window "
                                                      f"is under ({p.x}, {p.y}) ({exc})")]
        where = None if window is None else _command_window(window)
        if where is None:
            return []
        return [Concern(Category.TERMINAL_TYPING, f"a middle click pastes the selection into "
                                                  f"{where}, running every line pasted")]

    # Secrets.

    def _secret_typing(self, text: str) -> list[Concern]:
        """Secret-looking text the task did not supply, judged with what was typed into the
        same window before: a key sent in pieces is caught when its pieces join up."""
        window, _ = self.focused()
        before = self.policy.typed(0 if window is None else window.id)
        whole = before + text
        for what, part in secret_spans(whole):
            if part in before and part not in text:
                continue  # judged (and let through) when it was typed
            if not self.policy.supplied_by_task(part):
                pieces = "" if part in text else ", typed in pieces"
                # Never the text itself: concerns are logged and shown to the model.
                return [Concern(Category.SECRET_TYPING, f"the text to type looks like {what}"
                                                        f"{pieces}, and the task did not "
                                                        "supply it")]
        return []

    # Clicks.

    def _sensitive_click(self, action: Click | Drag) -> list[Concern]:
        out = []
        if action.target and (word := consequential(action.target)):
            out.append(Concern(Category.SENSITIVE_CLICKS,
                               f'the model describes the target as "{_one_line(action.target)}" '
                               f'("{word}")'))
        # A drag acts where it is released (a drop on "Trash"); a click where it presses.
        point = self.resolved.points[-1] if self.resolved.points else None
        can_read = self.policy.reader is not None or self.known is not None
        if point is not None and can_read and self.frame is not None:
            concern = self._read_click(self.policy.reader, self.frame, point)
            if concern is not None:
                out.append(concern)
        return out

    def _read_click(self, reader: TextReader | None, frame: Frame,
                    point: Point) -> Concern | None:
        screen = frame.screen
        if not screen.contains(point):
            return None
        px = (point.x - screen.left) * screen.scale
        py = (point.y - screen.top) * screen.scale
        known = self.known
        try:
            if known is not None and known.label is not None and _opens_only(known):
                return None  # "Format" formats nothing; "Format..." asks how first
            if known is not None and known.label is not None:
                label: _Label | None = _Label((known.label,), affirmative(known.label),
                                              known.label)
            else:
                lines = _read_around(reader, frame, px, py, half=CLICK_READ, known=known)
                label = _label_at(lines, px, py, _ON_TEXT_MARGIN * screen.scale)
            if label is None:
                return None
            for text in label.judged:
                if word := consequential(text):
                    return Concern(Category.SENSITIVE_CLICKS,
                                   f'the click lands on "{_one_line(label.shown)}" ("{word}")')
            if label.affirmative:
                dialog = known.dialog if known is not None and known.dialog is not None else \
                    [line.text for line in _read_around(reader, frame, px, py,
                                                        half=DIALOG_READ, known=known)]
                for text in dialog:
                    if word := consequential(text):
                        return Concern(Category.SENSITIVE_CLICKS,
                                       f'the click on "{_one_line(label.shown)}" answers "'
                                       f'{_one_line(text)}" ("{word}")')
        except OcrError as exc:
            return Concern(Category.SENSITIVE_CLICKS, f"cannot read the text under the click "
                                                      f"({exc}); it may be consequential")
        return None


@dataclass(frozen=True, slots=True)
class _Label:
    """What a click lands on: the texts judged for consequential words, whether it is a bare
    yes (judged by its dialog), and the label as shown to the person."""

    judged: tuple[str, ...]
    affirmative: bool
    shown: str


def _label_at(lines: list[TextLine], px: float, py: float, margin: float) -> _Label | None:
    """The label of the element under pixel (px, py).

    OCR may run neighbouring buttons into one line ("OK) Cance1", "YeS No"): each line is
    split into elements by the gaps between its word boxes, and the element under the point is
    the label. A line without word boxes is split at its spaces by a proportional guess, so the
    whole line is judged as well (a false alarm costs a question; a miss, a deleted file).
    """
    on = _lines_at(lines, px, py, margin)
    if not on:
        return None
    judged: list[str] = []
    yes = False
    shown = []
    for line in on:
        parts = elements(line)
        element = _nearest(parts, px, py, margin)
        judged.append(element.text)
        shown.append(element.text)
        if guessed(line):
            judged.append(line.text)
        yes = yes or affirmative(element.text)
        if line.words:  # the very word under the point ("Yes" of a merged "Yes No")
            word = min(line.words, key=lambda w: _distance(w.box, px, py))
            yes = yes or affirmative(word.text)
    return _Label(tuple(judged), yes, " / ".join(shown))


def _nearest(parts: list[Element], px: float, py: float, margin: float) -> Element:
    for part in parts:
        x1, y1, x2, y2 = part.box
        if x1 - margin <= px < x2 + margin and y1 - margin <= py < y2 + margin:
            return part
    return min(parts, key=lambda part: _distance(part.box, px, py))


def _read_around(reader: TextReader | None, frame: Frame, px: float, py: float, *,
                 half: tuple[int, int], known: KnownText | None = None) -> list[TextLine]:
    """The lines in a box of ``half`` points each way around pixel (px, py), clipped: taken
    from ``known`` when it covers the box, else read (OcrError without a reader)."""
    scale = frame.screen.scale
    hx, hy = half[0] * scale, half[1] * scale
    height, width = frame.rgb.shape[:2]
    region = clip_region((math.floor(px - hx), math.floor(py - hy),
                          math.ceil(px + hx) + 1, math.ceil(py + hy) + 1), width, height)
    if known is not None and known.covers(region):
        return known.lines_in(region)
    if reader is None:
        raise OcrError("no reader to read the text around the click")
    return reader.read(frame.rgb, region)


def _lines_at(lines: list[TextLine], px: float, py: float, margin: float) -> list[TextLine]:
    """The lines whose box (grown by ``margin``) holds the point, else the nearest line.

    The clicked element's own label, not every label nearby: "Cancel" beside "Delete" is not
    a delete. A click on an icon or in a button's padding takes the nearest text as its label.
    """
    on = [line for line in lines
          if line.box[0] - margin <= px < line.box[2] + margin
          and line.box[1] - margin <= py < line.box[3] + margin]
    if on or not lines:
        return on
    return [min(lines, key=lambda line: _distance(line.box, px, py))]


def _distance(box: PixelBox, px: float, py: float) -> float:
    dx = max(box[0] - px, 0.0, px - box[2])
    dy = max(box[1] - py, 0.0, py - box[3])
    return math.hypot(dx, dy)


def _describe_window(window: WindowInfo) -> str:
    title = f'"{_one_line(window.title, 40)}"' if window.title else "an untitled window"
    return f"{title} ({'/'.join(window.wm_class)})" if window.wm_class else title


def _patterns(scope: Scope) -> str:
    return ", ".join(repr(p) for p in scope.windows)


def _one_line(text: str, limit: int = 60) -> str:
    return shorten(" ".join(text.split()), limit)


__all__ = ["CLICK_READ", "DIALOG_READ", "Concern", "KnownText", "Policy", "PolicyDenied",
           "Review", "Scope", "key_text", "secret_spans", "shows_prompt"]
