"""``deskpilot doctor``: can this machine run the agent? Each failing line says how to fix it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from deskpilot.agent.cli.console import say


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _display() -> Check:
    from deskpilot.grounding.capture import CaptureError, list_monitors

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        return Check("display", False, "DISPLAY is not set", NO_DISPLAY_FIX)
    try:
        monitors = list_monitors()
    except CaptureError as exc:
        return Check("display", False, str(exc), "check that the X server is running and "
                     "that this user may connect to it (xhost / XAUTHORITY)")
    shown = ", ".join(f"{i}: {m.width}x{m.height}+{m.left}+{m.top} scale {m.scale:g}"
                      for i, m in enumerate(monitors, 1))
    return Check("display", True, f"{os.environ.get('DISPLAY', '')} monitors {shown}")


NO_DISPLAY_FIX = ("run inside an X session (DISPLAY=:0), or start Xvfb (`Xvfb :99 &`) and "
                  "export DISPLAY=:99; task files need neither: `deskpilot run FILE.yaml "
                  "--headless` starts a private Xvfb")


def _input() -> Check:
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        # Without a display there is nothing to send input to; XTEST is not the problem.
        return Check("input", False, "no display to send input to (DISPLAY is not set)",
                     NO_DISPLAY_FIX)
    try:
        import pyautogui

        x, y = pyautogui.position()
        w, h = pyautogui.size()
    except Exception as exc:  # pyautogui raises many kinds when X or XTEST is missing
        return Check("input", False, f"pyautogui cannot reach the display: {exc}",
                     "the X server needs the XTEST extension; on Wayland run an X session")
    return Check("input", True, f"pyautogui sees a {w}x{h} desktop, pointer at ({x}, {y})")


def _llama() -> Check:
    try:
        import llama_cpp
    except ImportError as exc:
        return Check("llama.cpp", False, f"llama-cpp-python is not importable: {exc}",
                     "reinstall: `make venv` (or pip install llama-cpp-python==0.3.36)")
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    detail = f"llama-cpp-python {llama_cpp.__version__}, GPU offload {'yes' if gpu else 'no'}"
    fix = "" if gpu else ("CPU only (works, slowly for the 15B model); for CUDA: "
                          "CMAKE_ARGS='-DGGML_CUDA=on' pip install --force-reinstall "
                          "--no-cache-dir llama-cpp-python==0.3.36")
    return Check("llama.cpp", True, f"{detail}; {info[:120]}", fix)


def _models() -> Check:
    from deskpilot.models import catalog

    rows = catalog.list_entries()
    present = [r for r in rows if r.status == "present"]
    if not present:
        name = catalog.DEFAULT_MODEL
        return Check("model files", False, f"no model downloaded in {rows[0].directory.parent}",
                     f"run `deskpilot models pull {name}` (or pass --model PATH --mmproj "
                     "PATH; --model tiny tries the loop with a random model)")
    return Check("model files", True, ", ".join(f"{r.name} in {r.directory}" for r in present))


CHECKS: tuple[Callable[[], Check], ...] = (_display, _input, _llama, _models)


def run_doctor() -> int:
    """Print one line per check; exit 1 when any failed."""
    results = [check() for check in CHECKS]
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        say(f"[{mark}] {r.name:<12} {r.detail}")
        if r.fix:
            say(f"       {'':<12} {'note' if r.ok else 'fix'}: {r.fix}")
    return 0 if all(r.ok for r in results) else 1
