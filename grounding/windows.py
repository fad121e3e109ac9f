"""Which window is focused, and which window lies under a screen point: a Protocol, X11, a fake.

The safety policy asks these questions before any input is sent: whether typing would land in a
terminal, whether a click stays inside the windows a task may touch, and whether the focus moved
between deciding to type and typing.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, runtime_checkable

from deskpilot.grounding.geometry import PixelBox

if TYPE_CHECKING:
    from Xlib.display import Display

log = logging.getLogger(__name__)

# How far below a top-level window the client (the window with WM_CLASS) is looked for: a
# reparenting window manager puts it one or two levels down inside its frame.
_CLIENT_SEARCH_DEPTH = 4
_CLIENT_SEARCH_LIMIT = 256

_T = TypeVar("_T")


class WindowProbeError(RuntimeError):
    """The window system could not be asked (no display, connection lost)."""


@dataclass(frozen=True, slots=True)
class WindowInfo:
    """A top-level window: its id, its title, its WM_CLASS (instance, class), and where it is
    on the screen (x1, y1, x2, y2 in screen points, when known; not part of its identity)."""

    id: int
    title: str
    wm_class: tuple[str, ...] = ()
    box: PixelBox | None = field(default=None, compare=False)


@runtime_checkable
class WindowProbe(Protocol):
    """Answers which window has the keyboard focus and which one is under a screen point."""

    def focused(self) -> WindowInfo | None:
        """The window keyboard input goes to now, or None when it goes nowhere."""
        ...

    def under(self, x: int, y: int) -> WindowInfo | None:
        """The top-level window under screen point (x, y), or None over the bare desktop."""
        ...


class X11WindowProbe:
    """Window questions answered by the X server through python-xlib, on one connection.

    ``display`` is an X display name (``":7"``); None means ``$DISPLAY``. The connection is
    opened here and kept until :meth:`close` (or the end of a ``with`` block); calls may come
    from any thread, one at a time.

    A window is reported as its *client*: the window that carries WM_CLASS, found by walking up
    from a focused child or down into a window manager's frame. Its title is ``_NET_WM_NAME``
    (UTF-8) or else ``WM_NAME``.

    Focus: without a window manager the X server's focus is usually ``PointerRoot``, which sends
    keys to the window under the pointer; :meth:`focused` then reports the window under the
    pointer, which is where typed keys would go. A focus of ``None`` (keys are discarded) gives
    None; a focus on the root window is treated like ``PointerRoot``, as the server does.
    """

    def __init__(self, display: str | None = None) -> None:
        from Xlib.display import Display

        try:
            self._display: Display | None = Display(display)
        except Exception as exc:  # python-xlib raises DisplayError, OSError, even OverflowError
            raise WindowProbeError(f"cannot open X display {display or '$DISPLAY'!r}: "
                                   f"{exc}") from exc
        self._root = self._display.screen().root
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection to the X server; later calls raise WindowProbeError."""
        with self._lock:
            if self._display is not None:
                display, self._display = self._display, None
                try:
                    display.close()
                except Exception as exc:  # a server already gone: nothing left to close
                    log.debug("closing the X connection: %s", exc)

    def focused(self) -> WindowInfo | None:
        """The client window that keyboard input goes to now (see the class notes)."""
        from Xlib import X

        def ask(display: Display) -> WindowInfo | None:
            focus = display.get_input_focus().focus
            if isinstance(focus, int) and focus == X.NONE:
                return None  # keys are discarded
            if isinstance(focus, int) or focus.id == self._root.id:  # PointerRoot, or the root
                pointer = self._root.query_pointer()
                return self._under(pointer.root_x, pointer.root_y)
            return self._client_of(focus)

        return self._call(ask)

    def under(self, x: int, y: int) -> WindowInfo | None:
        """The client of the topmost viewable top-level window containing (x, y).

        The server's own hit test (TranslateCoordinates on the root window) picks the child:
        it walks the root's children top to bottom, skips unmapped ones and honours shaped and
        input-shaped windows (a compositor's overlay takes no input, so it is passed over).
        """
        return self._call(lambda display: self._under(x, y))

    def windows(self) -> list[WindowInfo]:
        """The viewable top-level windows' clients, topmost first, with their boxes."""
        return self._call(self._windows)

    def _windows(self, display: Display) -> list[WindowInfo]:
        from Xlib import X
        from Xlib import error as xerror

        out = []
        for child in reversed(self._root.query_tree().children):
            try:
                if child.get_attributes().map_state != X.IsViewable:
                    continue
            except xerror.BadWindow:
                continue  # gone while we looked
            info = self._client_of(child)
            out.append(info if info.box is not None else
                       WindowInfo(info.id, info.title, info.wm_class, _box(child)))
        return out

    def _call(self, ask: Callable[[Display], _T]) -> _T:
        from Xlib import error as xerror

        with self._lock:
            display = self._display
            if display is None:
                raise WindowProbeError("the window probe is closed")
            try:
                return ask(display)
            except (xerror.ConnectionClosedError, xerror.XError, OSError) as exc:
                raise WindowProbeError(f"cannot ask the X server about windows: {exc}") from exc

    def _under(self, x: int, y: int) -> WindowInfo | None:
        from Xlib import X

        if not (-32768 <= x < 32768 and -32768 <= y < 32768):
            return None  # outside what X coordinates can express: no window is there
        child = self._root.translate_coords(self._root, x, y).child
        if child == X.NONE:
            return None
        return self._client_of(child)

    def _client_of(self, window: Any) -> WindowInfo:
        """The window with WM_CLASS that ``window`` belongs to (see the class notes)."""
        from Xlib import error as xerror

        chain = []
        current = window
        while current is not None and current.id != self._root.id:
            chain.append(current)
            try:
                parent = current.query_tree().parent
            except xerror.BadWindow:
                break  # destroyed while we looked: what was seen so far still counts
            current = None if isinstance(parent, int) else parent  # X.NONE: no parent
        for candidate in chain:
            info = _info(candidate)
            if info is not None:
                return info
        top = chain[-1] if chain else window
        found = _search_down(top)
        if found is not None:
            return found
        return WindowInfo(top.id, _title(top) or "", ())


def _info(window: Any) -> WindowInfo | None:
    """WindowInfo for a window that carries WM_CLASS; None for one without (or gone)."""
    from Xlib import error as xerror

    try:
        wm_class = window.get_wm_class()
        if wm_class is None:
            return None
        return WindowInfo(window.id, _title(window) or "", tuple(wm_class), _box(window))
    except xerror.BadWindow:
        return None


def _box(window: Any) -> PixelBox | None:
    """Where ``window`` is on its screen; None when the server cannot say."""
    from Xlib import error as xerror

    try:
        geometry = window.get_geometry()
        # The window's root from the server (a window's ``display`` here is the low-level
        # connection, which has no screens to ask).
        origin = geometry.root.translate_coords(window, 0, 0)
    except (xerror.XError, AttributeError):
        return None
    return (origin.x, origin.y, origin.x + geometry.width, origin.y + geometry.height)


def _title(window: Any) -> str | None:
    from Xlib import error as xerror

    try:
        display = window.display
        name = window.get_full_text_property(display.get_atom("_NET_WM_NAME"),
                                             display.get_atom("UTF8_STRING"))
        if not name:
            name = window.get_wm_name()
    except xerror.BadWindow:
        return None
    if isinstance(name, bytes):  # a type python-xlib does not decode (COMPOUND_TEXT)
        name = name.decode("latin-1")
    return name if isinstance(name, str) else None


def _search_down(top: Any) -> WindowInfo | None:
    """Breadth-first, the first window with WM_CLASS inside a window manager's frame."""
    from Xlib import error as xerror

    queue: deque[tuple[Any, int]] = deque([(top, 0)])
    seen = 0
    while queue and seen < _CLIENT_SEARCH_LIMIT:
        window, depth = queue.popleft()
        seen += 1
        info = _info(window)
        if info is not None:
            return info
        if depth >= _CLIENT_SEARCH_DEPTH:
            continue
        try:
            children = window.query_tree().children
        except xerror.BadWindow:
            continue
        # Topmost first: a frame's client is usually its last (or only) child.
        queue.extend((child, depth + 1) for child in reversed(children))
    return None


class FakeWindowProbe:
    """A scripted probe for tests.

    ``focus`` is the focused window (set it to change focus). ``windows`` lists
    ``(box, info)`` pairs, topmost first; ``under`` answers the first box (screen points,
    x2/y2 exclusive) that holds the point. Set ``error`` to make every call raise it.
    """

    def __init__(self, focus: WindowInfo | None = None,
                 windows: Sequence[tuple[PixelBox, WindowInfo]] = ()) -> None:
        self.focus = focus
        self.windows = list(windows)
        self.error: WindowProbeError | None = None
        self.calls = 0

    def focused(self) -> WindowInfo | None:
        """The scripted focus."""
        self._count()
        return self.focus

    def under(self, x: int, y: int) -> WindowInfo | None:
        """The first scripted window whose box holds (x, y)."""
        self._count()
        for (x1, y1, x2, y2), info in self.windows:
            if x1 <= x < x2 and y1 <= y < y2:
                return info
        return None

    def _count(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


__all__ = ["FakeWindowProbe", "WindowInfo", "WindowProbe", "WindowProbeError",
           "X11WindowProbe"]


def open_window_probe(display: str) -> X11WindowProbe | None:
    """The X11 window probe; without it window scope and terminal detection fail closed."""
    try:
        return X11WindowProbe(display)
    except WindowProbeError as exc:
        log.warning("no window information (%s): window scopes cannot be checked", exc)
        return None
