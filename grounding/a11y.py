"""What applications say is on the screen: the accessibility tree, read over AT-SPI (D-Bus).

GTK and Qt apps publish their widgets (role, name, states, on-screen extents) on the
accessibility bus, whose address the session bus hands out (``org.a11y.Bus.GetAddress``).
:class:`AtspiTree` walks the showing part of every application's tree with jeepney, a small
pure-Python D-Bus client; :class:`FakeTree` stands in for it in tests. Grounding a target on a
name the application gives is exact where OCR guesses: symbol keys, small text, lookalikes.

Everything here is optional: without a session bus, an accessibility bus or jeepney,
:func:`open_tree` returns None and callers read pixels as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from deskpilot.grounding.geometry import PixelBox
from deskpilot.grounding.textmatch import fold_text, same_text

log = logging.getLogger(__name__)

REGISTRY = "org.a11y.atspi.Registry"
ROOT_PATH = "/org/a11y/atspi/accessible/root"
ACCESSIBLE = "org.a11y.atspi.Accessible"
COMPONENT = "org.a11y.atspi.Component"
PROPERTIES = "org.freedesktop.DBus.Properties"
NULL_PATH = "/org/a11y/atspi/null"  # what AT-SPI answers for "no object"
MAX_DEPTH = 64  # levels followed down from a window to the element at a point
PIPELINE = 100  # calls in flight at once (well under a bus's limit on pending replies)
COORDS_SCREEN = 0
# AT-SPI state bits (AtspiStateType) used here.
STATE_BITS = {"enabled": 8, "focused": 12, "sensitive": 24, "showing": 25, "visible": 30}
MAX_ELEMENTS = 5000  # a walk stops here: a runaway tree (a huge table) must not hang a step
CALL_TIMEOUT_S = 2.0
# Roles a person clicks; among several elements with one name these win over plain text.
ACTIONABLE = frozenset({
    "push button", "toggle button", "radio button", "check box", "menu item", "menu",
    "radio menu item", "check menu item", "page tab", "link", "list item", "table cell",
    "combo box", "text", "entry", "spin button", "icon", "tree item", "button",
})


class A11yError(RuntimeError):
    """The accessibility bus could not be reached or answered nonsense."""


@dataclass(frozen=True, slots=True)
class A11yElement:
    """One showing element: its role name (``push button``), name, states, box in screen
    points, and the name of its top-level window."""

    name: str
    role: str
    states: frozenset[str]
    box: PixelBox
    window: str

    def step(self, region: Sequence[int] | None = None) -> str:
        """The task-file line that targets this element, narrowed to ``region`` when given
        (the name quoted as JSON, which YAML reads back as it was)."""
        where = "" if region is None else f", region: {list(region)}"
        return (f"click: {{name: {json.dumps(self.name, ensure_ascii=False)}, "
                f"role: {self.role}{where}}}")


class A11yTree(Protocol):
    """Something that lists the elements on the screen now."""

    def elements(self) -> list[A11yElement]:
        """Every showing, named element with a non-empty box, in tree order."""
        ...

    def at(self, x: int, y: int) -> A11yElement | None:
        """The element :func:`element_at` would pick at screen point (x, y), asked of the
        application under the point alone; None when there is none or it cannot be told."""
        ...


class FakeTree:
    """A scripted tree for tests; counts its walks."""

    def __init__(self, elements: Sequence[A11yElement]) -> None:
        self.items = list(elements)
        self.walks = 0

    def elements(self) -> list[A11yElement]:
        """The scripted elements."""
        self.walks += 1
        return list(self.items)

    def at(self, x: int, y: int) -> A11yElement | None:
        """The scripted element at the point (not counted as a walk)."""
        return element_at(self.items, x, y)


class A11yLookupError(LookupError):
    """No single element has the name (and role) asked for; ``candidates`` are the nearest."""

    def __init__(self, message: str, candidates: tuple[A11yElement, ...]) -> None:
        super().__init__(message)
        self.candidates = candidates


def role_matches(wanted: str, role: str) -> bool:
    """Whether a role asked for fits an element's role: ``button`` fits ``push button``."""
    want, have = fold_text(wanted), fold_text(role)
    return want == have or have.endswith(" " + want)


def find_element(elements: Iterable[A11yElement], name: str, *, role: str | None = None,
                 region: PixelBox | None = None) -> A11yElement:
    """The one element named ``name`` (folded: case, full-width forms, lookalike symbols),
    of ``role`` when given, centred in ``region`` when given.

    Several matches: an actionable role (a button over a label of the same text) wins; still
    several raise :class:`A11yLookupError` with them; none raises it with the nearest names.
    """
    pool = [e for e in elements if region is None or _centre_in(e.box, region)]
    named = [e for e in pool if same_text(e.name, name)]
    if role is not None:
        named = [e for e in named if role_matches(role, e.role)]
    if len(named) > 1:
        acting = [e for e in named if e.role in ACTIONABLE]
        named = acting or named
    what = f'"{name}"' + (f" ({role})" if role else "")
    if len(named) == 1:
        return named[0]
    if named:
        places = ", ".join(f"{e.role} at {e.box}" for e in named[:5])
        raise A11yLookupError(f"{what} names {len(named)} accessible elements: {places}",
                              tuple(named))
    near = nearest(pool, name)
    closest = f"; closest: {', '.join(repr(e.name) for e in near)}" if near else ""
    raise A11yLookupError(f"no accessible element {what} among {len(pool)}{closest}",
                          tuple(near))


def nearest(elements: Sequence[A11yElement], name: str, count: int = 5
            ) -> list[A11yElement]:
    """The elements whose names are closest to ``name``."""
    import difflib

    key = fold_text(name)
    ranked = sorted(elements, key=lambda e: (-difflib.SequenceMatcher(
        None, key, fold_text(e.name)).ratio(), e.name))
    return ranked[:count]


def _centre_in(box: PixelBox, region: PixelBox) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] <= cx < region[2] and region[1] <= cy < region[3]


# Roles whose name is a title, not the label of what is under the pointer: a click inside a
# window on a part the tree does not name is not a click on the window's title.
CONTAINERS = frozenset({
    "frame", "window", "dialog", "alert", "file chooser", "application", "filler", "panel",
    "scroll pane", "viewport", "layered pane", "root pane", "glass pane", "split pane",
    "tool bar", "menu bar", "status bar", "page tab list", "internal frame", "desktop frame",
})


def element_at(elements: Iterable[A11yElement], x: float, y: float) -> A11yElement | None:
    """The smallest named element whose box holds the point (the innermost widget); windows
    and other containers do not count (their names are titles, not labels)."""
    under = [e for e in elements if e.box[0] <= x < e.box[2] and e.box[1] <= y < e.box[3]
             and e.role not in CONTAINERS]
    return min(under, key=lambda e: (e.box[2] - e.box[0]) * (e.box[3] - e.box[1]),
               default=None)


class CachedTree:
    """A tree walked again only when the screen changed: keyed by a small copy of the frame."""

    def __init__(self, tree: A11yTree) -> None:
        self.tree = tree
        self._key: str | None = None
        self._elements: list[A11yElement] = []

    def elements(self, rgb: np.ndarray) -> list[A11yElement]:
        """The elements for the screen ``rgb`` shows (a walk when it changed)."""
        key = _screen_key(rgb)
        if key != self._key:
            self._elements = self.tree.elements()
            self._key = key
        return list(self._elements)

    def at(self, rgb: np.ndarray, x: int, y: int) -> A11yElement | None:
        """The element at screen point (x, y) on the screen ``rgb`` shows: from the last walk
        when the screen is the same, else asked of the tree at that point (no walk)."""
        if _screen_key(rgb) == self._key:
            return element_at(self._elements, x, y)
        return self.tree.at(x, y)

    def forget(self) -> None:
        """Walk again at the next call."""
        self._key = None


def _screen_key(rgb: np.ndarray) -> str:
    small = np.ascontiguousarray(rgb[::4, ::4])
    return hashlib.blake2b(small.data, digest_size=16).hexdigest()


class AtspiTree:
    """The AT-SPI tree on the accessibility bus of the session bus at ``session_address``."""

    def __init__(self, session_address: str) -> None:
        self.session_address = session_address
        self._conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None:
            from jeepney import DBusAddress, new_method_call
            from jeepney.io.blocking import open_dbus_connection

            try:
                with open_dbus_connection(self.session_address) as session:
                    reply = session.send_and_get_reply(new_method_call(
                        DBusAddress("/org/a11y/bus", "org.a11y.Bus", "org.a11y.Bus"),
                        "GetAddress"), timeout=CALL_TIMEOUT_S)
                address = _body(reply)[0]
                self._conn = open_dbus_connection(address)
            except (OSError, ValueError, TimeoutError, A11yError) as exc:
                raise A11yError(f"no accessibility bus: {exc}") from exc
        return self._conn

    def close(self) -> None:
        """Close the connection to the accessibility bus."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def elements(self) -> list[A11yElement]:
        """Walk each application's showing subtree (hidden branches are not entered)."""
        try:
            return self._walk()
        except (OSError, TimeoutError) as exc:
            self.close()
            raise A11yError(f"the accessibility bus stopped answering: {exc}") from exc

    def _walk(self) -> list[A11yElement]:
        """The tree level by level: every question about one level is sent before the first
        answer is read, so a walk costs one round trip per level of the tree, not five per
        element (galculator: 89 ms one call at a time)."""
        apps = self._call(REGISTRY, ROOT_PATH, ACCESSIBLE, "GetChildren")[0]
        replies = self._batch([(bus, path, ACCESSIBLE, "GetChildren", None, ())
                               for bus, path in apps])
        level: list[_Node] = []
        for i, ((bus, _), reply) in enumerate(zip(apps, replies, strict=True)):
            if isinstance(reply, A11yError):  # an application that went away mid-walk
                log.debug("skipping application %s: %s", bus, reply)
                continue
            level.extend(_Node(b, p, "", (i, j)) for j, (b, p) in enumerate(reply[0]))
        found: list[tuple[tuple[int, ...], A11yElement]] = []
        visited = 0
        while level and visited < MAX_ELEMENTS:
            level = level[:MAX_ELEMENTS - visited]
            visited += len(level)
            level = self._visit(level, found)
        return [element for _, element in sorted(found, key=lambda pair: pair[0])]

    def at(self, x: int, y: int) -> A11yElement | None:
        """Down from the one showing window that holds the point, child at point by child at
        point (a round trip per level), to the innermost named element that is not a
        container. None when no window or several windows hold the point (without a window
        manager there is no stacking order to tell which one is on top)."""
        try:
            return self._at(x, y)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise A11yError(f"the accessibility bus stopped answering: {exc}") from exc

    def _at(self, x: int, y: int) -> A11yElement | None:
        apps = self._call(REGISTRY, ROOT_PATH, ACCESSIBLE, "GetChildren")[0]
        windows = [w for reply in self._batch([(b, p, ACCESSIBLE, "GetChildren", None, ())
                                                for b, p in apps])
                   if not isinstance(reply, A11yError) for w in reply[0]]
        facts = self._batch([call for b, p in windows for call in _facts(b, p)])
        under = []
        for n, (bus, path) in enumerate(windows):
            element = _element(facts[4 * n:4 * n + 4], "")
            if element is not None and _holds(element.box, x, y):
                under.append((bus, path, element))
        if len(under) != 1:
            return None
        bus, path, window = under[0]
        best = None
        for _ in range(MAX_DEPTH):
            replies = self._batch([(bus, path, COMPONENT, "GetAccessibleAtPoint", "iiu",
                                    (x, y, COORDS_SCREEN)), *_facts(bus, path)])
            element = _element(replies[1:], window.name)
            if element is not None and element.role not in CONTAINERS \
                    and _holds(element.box, x, y):
                best = element
            child = replies[0]
            if isinstance(child, A11yError) or child[0][1] in ("/", NULL_PATH) \
                    or tuple(child[0]) == (bus, path):
                break
            bus, path = child[0]
        return best

    def _visit(self, level: list[_Node], found: list[tuple[tuple[int, ...], A11yElement]]
               ) -> list[_Node]:
        """Ask about every node of one level; keep the named ones, return the next level."""
        calls = []
        for node in level:
            calls += [*_facts(node.bus, node.path),
                      (node.bus, node.path, ACCESSIBLE, "GetChildren", None, ())]
        replies = self._batch(calls)
        below: list[_Node] = []
        for n, node in enumerate(level):
            state, children = replies[5 * n], replies[5 * n + 4]
            if isinstance(state, A11yError) or isinstance(children, A11yError):
                continue  # an element destroyed while walking
            if not {"showing", "visible"} <= _states(state[0]):
                continue  # nothing under a hidden element is shown either
            element = _element(replies[5 * n:5 * n + 4], node.window)
            if element is not None:
                found.append((node.order, element))
            window = node.window or (element.name if element is not None else "")
            below.extend(_Node(b, p, window, (*node.order, j))
                         for j, (b, p) in enumerate(children[0]))
        return below

    def _batch(self, calls: Sequence[tuple[str, str, str, str, str | None, tuple[Any, ...]]]
               ) -> list[tuple[Any, ...] | A11yError]:
        """Send the calls in groups of :data:`PIPELINE` and collect every answer (or the error
        it came back as), in order."""
        from jeepney import DBusAddress, new_method_call
        from jeepney.low_level import HeaderFields

        conn = self._connection()
        out: list[tuple[Any, ...] | A11yError] = []
        for start in range(0, len(calls), PIPELINE):
            serials = {}
            for k, (bus, path, interface, method, signature, body) in \
                    enumerate(calls[start:start + PIPELINE]):
                serial = next(conn.outgoing_serial)
                serials[serial] = k
                conn.send(new_method_call(DBusAddress(path, bus, interface), method,
                                          signature, body), serial=serial)
            got: dict[int, tuple[Any, ...] | A11yError] = {}
            deadline = time.monotonic() + CALL_TIMEOUT_S
            while len(got) < len(serials):
                message = conn.receive(timeout=max(deadline - time.monotonic(), 0.0))
                k = serials.get(int(message.header.fields.get(HeaderFields.reply_serial, -1)),
                                -1)
                if k >= 0:
                    try:
                        got[k] = _body(message)
                    except A11yError as exc:
                        got[k] = exc
            out.extend(got[k] for k in range(len(serials)))
        return out

    def _call(self, bus: str, path: str, interface: str, method: str, *,
              signature: str | None = None, body: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        reply = self._batch([(bus, path, interface, method, signature, body)])[0]
        if isinstance(reply, A11yError):
            raise reply
        return reply


def _facts(bus: str, path: str) -> list[tuple[str, str, str, str, str | None, tuple[Any, ...]]]:
    """The calls that tell an element's states, name, role and box."""
    return [(bus, path, ACCESSIBLE, "GetState", None, ()),
            (bus, path, PROPERTIES, "Get", "ss", (ACCESSIBLE, "Name")),
            (bus, path, ACCESSIBLE, "GetRoleName", None, ()),
            (bus, path, COMPONENT, "GetExtents", "u", (COORDS_SCREEN,))]


def _element(replies: Sequence[tuple[Any, ...] | A11yError], window: str) -> A11yElement | None:
    """The element the answers to :func:`_facts` describe, when it is showing and named."""
    state, name, role, extents = replies
    if isinstance(state, A11yError) or isinstance(name, A11yError) or \
            isinstance(role, A11yError) or isinstance(extents, A11yError):
        return None
    states = _states(state[0])
    text, box = str(name[0][1]), _box(extents[0])
    if "showing" not in states or "visible" not in states or not text.strip() or box is None:
        return None
    return A11yElement(text, str(role[0]), frozenset(states), box, window or text)


def _holds(box: PixelBox, x: int, y: int) -> bool:
    return box[0] <= x < box[2] and box[1] <= y < box[3]


@dataclass(frozen=True, slots=True)
class _Node:
    """An element still to ask about: where it is, its window's name, its place in tree order."""

    bus: str
    path: str
    window: str
    order: tuple[int, ...]


def _box(extents: Sequence[int]) -> PixelBox | None:
    x, y, w, h = (int(v) for v in extents)
    if w <= 1 or h <= 1 or x < -10_000 or y < -10_000:
        return None  # not on the screen (or not a component at all)
    return (x, y, x + w, y + h)


def _body(reply: Any) -> tuple[Any, ...]:
    from jeepney import MessageType

    if reply.header.message_type == MessageType.error:
        raise A11yError(f"D-Bus error: {reply.header.fields} {reply.body}")
    return tuple(reply.body)


def _states(words: Sequence[int]) -> set[str]:
    bits = sum(int(w) << (32 * i) for i, w in enumerate(words))
    return {name for name, bit in STATE_BITS.items() if bits >> bit & 1}


def open_tree(env: Mapping[str, str] | None = None) -> AtspiTree | None:
    """The tree on the session bus ``env`` names, or None when there is no usable one."""
    address = (os.environ if env is None else env).get("DBUS_SESSION_BUS_ADDRESS")
    if not address:
        log.info("no session bus: grounding reads pixels only")
        return None
    try:
        import jeepney  # noqa: F401  (only whether it is installed)
    except ImportError:
        log.info("jeepney is not installed: grounding reads pixels only")
        return None
    tree = AtspiTree(address)
    try:
        tree.elements()
    except A11yError as exc:
        log.info("no accessibility tree: %s", exc)
        tree.close()
        return None
    return tree


__all__ = ["ACTIONABLE", "CONTAINERS", "A11yElement", "A11yError", "A11yLookupError", "A11yTree",
           "AtspiTree", "CachedTree", "FakeTree", "element_at", "find_element", "nearest",
           "open_tree", "role_matches"]
