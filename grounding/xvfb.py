"""Private virtual X displays (Xvfb) for demos, headless runs and tests.

An X server without authorization lets every local user connect: dump the screen (a password
being typed), inject input through XTEST. Each Xvfb started here therefore requires a fresh
MIT-MAGIC-COOKIE-1: the server reads it from a file of its own, and this process keeps the
cookies of the displays it started in one authority file. Both live in a private directory
(0700, files 0600) that is removed when the process exits. While a display started here is up,
``XAUTHORITY`` points at that file, so this process (mss, pyautogui, python-xlib) and every
child it starts (``display_env``) can connect, and nobody else can.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

COOKIE = b"MIT-MAGIC-COOKIE-1"
_FAMILY_LOCAL = 256  # a Unix-socket connection on this host (Xauth.h)
_FAMILY_WILD = 65535  # any address (the server only reads the cookie)


class _Authority:
    """The private directory, the client authority file, and the displays it holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self.displays: set[str] = set()
        self._entries: dict[str, bytes] = {}
        self._users = 0
        self._previous: str | None = None

    def directory(self) -> Path:
        if self._dir is None:
            _remove_orphaned_authorities()
            self._dir = Path(tempfile.mkdtemp(prefix=f"{_AUTH_PREFIX}{os.getpid()}-"))  # 0700
            atexit.register(shutil.rmtree, self._dir, True)
            _write_private(self._dir / "Xauthority", b"")
        return self._dir

    @property
    def file(self) -> Path:
        return self.directory() / "Xauthority"

    def server_file(self, cookie: bytes) -> Path:
        """A file for one server, holding only its cookie."""
        path = self.directory() / f"server-{secrets.token_hex(8)}"
        _write_private(path, _entry(_FAMILY_WILD, b"", b"", cookie))
        return path

    def enter(self, display: str, cookie: bytes) -> None:
        """Add the display's cookie and point ``XAUTHORITY`` at the file while one is up."""
        with self._lock:
            self._entries[display] = _entry(_FAMILY_LOCAL, socket.gethostname().encode(),
                                            display.lstrip(":").encode(), cookie)
            self._rewrite()
            self.displays.add(display)
            if self._users == 0:
                self._previous = os.environ.get("XAUTHORITY")
                os.environ["XAUTHORITY"] = str(self.file)
            self._users += 1

    def _rewrite(self) -> None:
        # One entry per display, the current one: a display number reused by the next Xvfb
        # must not find the cookie of the server that had it before (libXau takes the first
        # matching entry).
        tmp = self.file.with_name("Xauthority.new")
        tmp.unlink(missing_ok=True)
        _write_private(tmp, b"".join(self._entries.values()))
        tmp.replace(self.file)

    def leave(self, display: str) -> None:
        with self._lock:
            self._entries.pop(display, None)
            with contextlib.suppress(OSError):
                self._rewrite()
            self.displays.discard(display)
            self._users -= 1
            if self._users == 0:
                if self._previous is None:
                    os.environ.pop("XAUTHORITY", None)
                else:
                    os.environ["XAUTHORITY"] = self._previous


_AUTH_PREFIX = "deskpilot-xauth-"


def _remove_orphaned_authorities() -> None:
    """Remove the authority folders of deskpilot processes that were killed (``kill -9`` runs
    no exit handler); their displays died with them (see :func:`die_with_parent`)."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{_AUTH_PREFIX}*-*"):
        pid = folder.name.removeprefix(_AUTH_PREFIX).split("-", 1)[0]
        try:
            if not pid.isdigit() or folder.lstat().st_uid != os.getuid() or _alive(int(pid)):
                continue
        except OSError:
            continue
        log.debug("removing %s, left by process %s", folder, pid)
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """In a child between fork and exec: get ``signum`` when the process that started it dies.

    Linux's parent-death signal: if deskpilot is killed outright (``kill -9``, the OOM killer),
    its private Xvfb and the programs it launched go with it instead of running on, unseen.
    Elsewhere this does nothing. (The signal follows the thread that started the child.)
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, int(signum), 0, 0, 0)
    # The parent may have died between fork and the prctl: then nobody is left to signal us.
    if os.getppid() == 1:
        os._exit(1)


def _xvfb_dies_with_parent() -> None:
    # SIGTERM, not SIGKILL: Xvfb then removes its socket and lock file, so a killed run leaves
    # nothing for the next one to trip over; its clients end when their connection does.
    die_with_parent(signal.SIGTERM)


def is_private(display: str) -> bool:
    """True for a display this process started (nobody else's windows are on it)."""
    return display in _AUTHORITY.displays


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _entry(family: int, address: bytes, number: bytes, cookie: bytes) -> bytes:
    """One record of an X authority file (the format libXau reads)."""
    out = struct.pack(">H", family)
    for field in (address, number, COOKIE, cookie):
        out += struct.pack(">H", len(field)) + field
    return out


_AUTHORITY = _Authority()


def authority_file() -> Path:
    """The authority file with the cookies of the displays this process started (0600)."""
    return _AUTHORITY.file


def display_env(display: str) -> dict[str, str]:
    """The environment for a program on ``display``: this one, with ``DISPLAY`` set and, for a
    display started here, ``XAUTHORITY`` pointing at its cookie."""
    env = {**os.environ, "DISPLAY": display}
    if display in _AUTHORITY.displays:
        env["XAUTHORITY"] = str(_AUTHORITY.file)
    return env


class DisplayError(RuntimeError):
    """A virtual display or an app on it could not be started."""


@contextlib.contextmanager
def xvfb(width: int = 1280, height: int = 800, depth: int = 24) -> Iterator[str]:
    """Run Xvfb on a free display number and yield its name (e.g. ``":7"``).

    ``-displayfd`` lets the server pick a free number and say when it is ready, so parallel
    runs do not collide and nothing sleeps for a guessed time. The server takes only clients
    that hold its fresh cookie (see the module notes).
    """
    exe = shutil.which("Xvfb")
    if exe is None:
        raise DisplayError("Xvfb is not installed (Debian/Ubuntu: apt-get install xvfb; "
                           "or run `make deps`)")
    cookie = secrets.token_bytes(16)
    server_auth = _AUTHORITY.server_file(cookie)
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x{depth}",
         "-nolisten", "tcp", "-noreset", "-auth", str(server_auth)],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_xvfb_dies_with_parent)  # noqa: PLW1509 (a prctl before exec, nothing else)
    os.close(write_fd)
    name = None
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise DisplayError("Xvfb exited without reporting a display number")
        name = f":{number}"
        _AUTHORITY.enter(name, cookie)
        yield name
    finally:
        stop_process(proc)
        if name is not None:
            _AUTHORITY.leave(name)
        server_auth.unlink(missing_ok=True)


@contextlib.contextmanager
def launched(argv: list[str], display: str, *, window: str | None = None,
             timeout_s: float = 10.0) -> Iterator[subprocess.Popen[bytes]]:
    """Start an X app on ``display``; wait for its window (by name) when asked; stop it after."""
    if shutil.which(argv[0]) is None:
        raise DisplayError(f"{argv[0]} is not installed (Debian: x11-apps provides xcalc)")
    proc = subprocess.Popen(argv, env=display_env(display), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=die_with_parent)  # noqa: PLW1509 (see die_with_parent)
    try:
        if window is not None:
            wait_for_window(display, window, timeout_s=timeout_s)
        yield proc
    finally:
        stop_group(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Ask a child to exit, and insist if it does not within five seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """Stop a child started in a session of its own, and every process of its group.

    A command run through ``sh -c`` (or a program that forks a helper) leaves processes the
    child's own pid does not reach. The group is asked with SIGTERM, then, ``grace_s`` later or
    once the leader has gone, whatever is left of it gets SIGKILL. The leader is reaped only
    at the end, so its pid (the group's id) cannot be reused by anyone meanwhile.
    """
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
        except ChildProcessError:
            break
        time.sleep(0.02)
    time.sleep(0.05)  # members of the group that handle SIGTERM get a moment to finish
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def visible_windows(display: str) -> set[str]:
    """The ids of the viewable windows on ``display`` (an empty set when it cannot be asked)."""
    try:
        out = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", ""],
                             env=display_env(display), capture_output=True, text=True,
                             check=False, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(out.stdout.split())


def close_windows(display: str, ids: set[str]) -> None:
    """Disconnect the clients that own these windows (XKillClient), as a last resort."""
    for window in sorted(ids):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["xdotool", "windowkill", window], env=display_env(display),
                           capture_output=True, check=False, timeout=5)


POINTER_INSET = 5  # pixels inside a window's top-left corner: clear of its buttons


def point_at_window(display: str, window: str) -> bool:
    """Rest the pointer just inside ``window``; True when the server confirms the move.

    A private Xvfb has no window manager: the keyboard focus follows the pointer
    (``PointerRoot``), and keys typed while it rests on the bare desktop go nowhere. Moving the
    pointer, rather than setting the focus on the window, keeps focus-follows-pointer: a later
    click into another window still sends the keys there.
    """
    try:
        done = subprocess.run(["xdotool", "mousemove", "--window", window, "--sync",
                               str(POINTER_INSET), str(POINTER_INSET)],
                              env=display_env(display), capture_output=True, check=False,
                              timeout=3)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def wait_for_window(display: str, name: str, timeout_s: float = 10.0) -> str:
    """Wait until a visible window whose title, or either part of its X11 class, matches
    ``name`` (xdotool's pattern: a case-insensitive regular expression) appears; return its X
    window id. The timeout's error lists the windows that are there."""
    if shutil.which("xdotool") is None:
        raise DisplayError("xdotool is not installed (Debian: apt-get install xdotool)")
    deadline = time.monotonic() + timeout_s
    env = display_env(display)
    while time.monotonic() < deadline:
        # By title first: a title names one window where a class may name several.
        for how in (["--name"], ["--class", "--classname"]):
            out = subprocess.run(["xdotool", "search", "--onlyvisible", *how, name],
                                 env=env, capture_output=True, text=True, check=False)
            if ids := out.stdout.split():
                return ids[0]
        time.sleep(0.05)
    raise DisplayError(f"no window named {name!r} appeared on {display} within "
                       f"{timeout_s:g}s{_windows_there(display)}")


def _windows_there(display: str) -> str:
    """``"; windows there: 'Title' (class), ..."`` for an error message ("" when none)."""
    from deskpilot.grounding.windows import WindowProbeError, open_window_probe

    probe = open_window_probe(display)
    if probe is None:
        return ""
    try:
        shown = [f"{w.title!r} ({'/'.join(w.wm_class)})" if w.wm_class else repr(w.title)
                 for w in probe.windows()]
    except WindowProbeError:
        return ""
    finally:
        probe.close()
    return f"; windows there: {', '.join(shown)}" if shown else "; no window is there"


@contextlib.contextmanager
def session_bus(display: str) -> Iterator[str | None]:
    """A private D-Bus session bus for the apps on ``display``; yields its address, or None
    when dbus-daemon is not installed (apps then run without accessibility, as before).

    GTK and Qt apps publish their accessibility trees through it: the bus starts AT-SPI's
    bus launcher on demand. The bus, and what it starts, live in a private runtime directory
    (0700) and in a process group of their own, stopped together on the way out.
    """
    exe = shutil.which("dbus-daemon")
    if exe is None:
        log.info("dbus-daemon is not installed: no accessibility tree on %s", display)
        yield None
        return
    runtime = Path(tempfile.mkdtemp(prefix="deskpilot-bus-"))
    # The accessibility bus launcher puts its socket under XDG_RUNTIME_DIR: a private one
    # keeps parallel runs from sharing (or stealing) one accessibility bus.
    env = {**display_env(display), "XDG_RUNTIME_DIR": str(runtime)}
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [exe, "--session", "--nofork", "--nopidfile", f"--address=unix:path={runtime}/bus",
         f"--print-address={write_fd}"],
        pass_fds=(write_fd,), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=die_with_parent)  # noqa: PLW1509 (see die_with_parent)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            address = pipe.readline().strip()
        if not address:
            log.warning("dbus-daemon exited without an address: no accessibility tree")
            yield None
        else:
            log.info("session bus for %s at %s", display, address)
            yield address
    finally:
        stop_group(proc)  # the bus and the services it started
        shutil.rmtree(runtime, ignore_errors=True)


ENV_BUS = "DBUS_SESSION_BUS_ADDRESS"
ENV_NO_BRIDGE = "NO_AT_BRIDGE"  # set by some CI images; it turns GTK's accessibility off


@contextlib.contextmanager
def run_display(*, new: bool, size: tuple[int, int]) -> Iterator[tuple[str, bool]]:
    """Yield ``(display, started)``: ``$DISPLAY`` unless ``new`` or unset, else a fresh Xvfb
    with a private session bus (so the apps on it publish their accessibility trees).

    ``DISPLAY`` (and ``DBUS_SESSION_BUS_ADDRESS`` for a fresh display) are pointed at them for
    the duration, so the input device, the capture backend and launched apps use the same.
    """
    current = os.environ.get("DISPLAY")
    if current and not new:
        yield current, False
        return
    saved = {name: os.environ.get(name) for name in ("DISPLAY", ENV_BUS, ENV_NO_BRIDGE)}
    with xvfb(*size) as name, session_bus(name) as bus:
        log.info("started Xvfb %s at %dx%d", name, *size)
        os.environ["DISPLAY"] = name
        if bus is not None:
            os.environ[ENV_BUS] = bus
            os.environ.pop(ENV_NO_BRIDGE, None)
        try:
            yield name, True
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
