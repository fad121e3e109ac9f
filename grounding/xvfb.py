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
import socket
import struct
import subprocess
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
        self._cookies: dict[str, bytes] = {}  # display -> cookie, of the servers up now
        self._users = 0
        self._previous: str | None = None

    def directory(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="deskpilot-xauth-"))  # 0700
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
            self._cookies[display] = cookie
            self._write()
            if self._users == 0:
                self._previous = os.environ.get("XAUTHORITY")
                os.environ["XAUTHORITY"] = str(self.file)
            self._users += 1

    def leave(self, display: str) -> None:
        with self._lock:
            # Dropped from the file too: a later server may get the same display number, and
            # libXau would take the stale cookie that comes first.
            self._cookies.pop(display, None)
            self._write()
            self._users -= 1
            if self._users == 0:
                if self._previous is None:
                    os.environ.pop("XAUTHORITY", None)
                else:
                    os.environ["XAUTHORITY"] = self._previous


    @property
    def displays(self) -> frozenset[str]:
        """The displays whose servers this process started and that are up."""
        return frozenset(self._cookies)

    def _write(self) -> None:
        """Rewrite the client file with the cookies of the servers up now (atomically)."""
        host = socket.gethostname().encode()
        data = b"".join(_entry(_FAMILY_LOCAL, host, d.lstrip(":").encode(), c)
                        for d, c in self._cookies.items())
        fresh = self.directory() / f".Xauthority-{secrets.token_hex(4)}"
        _write_private(fresh, data)
        fresh.replace(self.file)


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
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    proc = subprocess.Popen(argv, env=display_env(display),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if window is not None:
            wait_for_window(display, window, timeout_s=timeout_s)
        yield proc
    finally:
        stop_process(proc)


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


def wait_for_window(display: str, name: str, timeout_s: float = 10.0) -> str:
    """Wait until a visible window whose name matches appears; return its X window id."""
    if shutil.which("xdotool") is None:
        raise DisplayError("xdotool is not installed (Debian: apt-get install xdotool)")
    deadline = time.monotonic() + timeout_s
    env = display_env(display)
    while time.monotonic() < deadline:
        out = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name],
                             env=env, capture_output=True, text=True, check=False)
        if ids := out.stdout.split():
            return ids[0]
        time.sleep(0.05)
    raise DisplayError(f"no window named {name!r} appeared on {display} within {timeout_s:g}s")


@contextlib.contextmanager
def run_display(*, new: bool, size: tuple[int, int]) -> Iterator[tuple[str, bool]]:
    """Yield ``(display, started)``: ``$DISPLAY`` unless ``new`` or unset, else a fresh Xvfb.

    ``DISPLAY`` is pointed at the display for the duration, so the input device and the
    capture backend (which read it when first used) act on the same screen.
    """
    current = os.environ.get("DISPLAY")
    if current and not new:
        yield current, False
        return
    with xvfb(*size) as name:
        log.info("started Xvfb %s at %dx%d", name, *size)
        os.environ["DISPLAY"] = name
        try:
            yield name, True
        finally:
            if current is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = current
