"""Private virtual X displays (Xvfb) for demos, headless runs and tests."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


class DisplayError(RuntimeError):
    """A virtual display or an app on it could not be started."""


@contextlib.contextmanager
def xvfb(width: int = 1280, height: int = 800, depth: int = 24) -> Iterator[str]:
    """Run Xvfb on a free display number and yield its name (e.g. ``":7"``).

    ``-displayfd`` lets the server pick a free number and say when it is ready, so parallel
    runs do not collide and nothing sleeps for a guessed time.
    """
    exe = shutil.which("Xvfb")
    if exe is None:
        raise DisplayError("Xvfb is not installed (Debian/Ubuntu: apt-get install xvfb; "
                           "or run `make deps`)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x{depth}",
         "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise DisplayError("Xvfb exited without reporting a display number")
        yield f":{number}"
    finally:
        stop_process(proc)


@contextlib.contextmanager
def launched(argv: list[str], display: str, *, window: str | None = None,
             timeout_s: float = 10.0) -> Iterator[subprocess.Popen[bytes]]:
    """Start an X app on ``display``; wait for its window (by name) when asked; stop it after."""
    if shutil.which(argv[0]) is None:
        raise DisplayError(f"{argv[0]} is not installed (Debian: x11-apps provides xcalc)")
    proc = subprocess.Popen(argv, env={**os.environ, "DISPLAY": display},
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
    env = {**os.environ, "DISPLAY": display}
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
