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
import logging
import os
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

    def step(self) -> str:
        """The task-file line that targets this element."""
        name = self.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'click: {{name: "{name}", role: {self.role}}}'


class A11yTree(Protocol):
    """Something that lists the elements on the screen now."""

    def elements(self) -> list[A11yElement]:
        """Every showing, named element with a non-empty box, in tree order."""
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


def element_at(elements: Iterable[A11yElement], x: float, y: float) -> A11yElement | None:
    """The smallest named element whose box holds the point (the innermost widget)."""
    under = [e for e in elements if e.box[0] <= x < e.box[2] and e.box[1] <= y < e.box[3]]
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
        small = np.ascontiguousarray(rgb[::4, ::4])
        key = hashlib.blake2b(small.data, digest_size=16).hexdigest()
        if key != self._key:
            self._elements = self.tree.elements()
            self._key = key
        return list(self._elements)

    def forget(self) -> None:
        """Walk again at the next call."""
        self._key = None


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
        apps = self._call(REGISTRY, ROOT_PATH, ACCESSIBLE, "GetChildren")[0]
        out: list[A11yElement] = []
        for bus, path in apps:
            try:
                windows = self._call(bus, path, ACCESSIBLE, "GetChildren")[0]
            except A11yError as exc:  # an app that went away mid-walk
                log.debug("skipping application %s: %s", bus, exc)
                continue
            for wbus, wpath in windows:
                self._subtree(wbus, wpath, "", out)
        return out

    def _subtree(self, bus: str, path: str, window: str, out: list[A11yElement]) -> None:
        stack = [(bus, path, window)]
        while stack and len(out) < MAX_ELEMENTS:
            bus, path, window = stack.pop()
            try:
                states = _states(self._call(bus, path, ACCESSIBLE, "GetState")[0])
                if "showing" not in states or "visible" not in states:
                    continue
                name = str(self._property(bus, path, "Name"))
                role = str(self._call(bus, path, ACCESSIBLE, "GetRoleName")[0])
                window = window or name
                box = self._extents(bus, path)
                children = self._call(bus, path, ACCESSIBLE, "GetChildren")[0]
            except A11yError as exc:  # an element destroyed while walking
                log.debug("skipping %s %s: %s", bus, path, exc)
                continue
            if name.strip() and box is not None:
                out.append(A11yElement(name, role, frozenset(states), box, window))
            stack.extend((b, p, window) for b, p in reversed(children))

    def _extents(self, bus: str, path: str) -> PixelBox | None:
        try:
            x, y, w, h = self._call(bus, path, COMPONENT, "GetExtents", signature="u",
                                    body=(COORDS_SCREEN,))[0]
        except A11yError:
            return None  # not a component (an application object, say)
        if w <= 1 or h <= 1 or x < -10_000 or y < -10_000:
            return None
        return (int(x), int(y), int(x + w), int(y + h))

    def _property(self, bus: str, path: str, name: str) -> Any:
        from jeepney import DBusAddress, Properties

        reply = self._connection().send_and_get_reply(
            Properties(DBusAddress(path, bus, ACCESSIBLE)).get(name), timeout=CALL_TIMEOUT_S)
        return _body(reply)[0][1]

    def _call(self, bus: str, path: str, interface: str, method: str, *,
              signature: str | None = None, body: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        from jeepney import DBusAddress, new_method_call

        reply = self._connection().send_and_get_reply(
            new_method_call(DBusAddress(path, bus, interface), method, signature, body),
            timeout=CALL_TIMEOUT_S)
        return _body(reply)


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


__all__ = ["ACTIONABLE", "A11yElement", "A11yError", "A11yLookupError", "A11yTree",
           "AtspiTree", "CachedTree", "FakeTree", "element_at", "find_element", "nearest",
           "open_tree", "role_matches"]
