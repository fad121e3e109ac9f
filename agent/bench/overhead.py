"""What one agent step costs apart from the model, against a naive pyautogui loop, on real xcalc.

Each screen size runs in a fresh interpreter (``--one WxH``): pyautogui connects to the display
named by ``DISPLAY`` when it is first imported and cannot be pointed at another one later, so
one process can only drive one private Xvfb. :func:`bench_overhead` starts those workers and
collects the JSON each prints.

*ours* is the agent's in-process hot path with the model left out: mss capture, preprocessing
to the patch budget, building the prompt and the :class:`~models.runtime.Request` (the
in-process runtime takes raw RGB, so nothing is encoded), parsing and validating a fixed click
on xcalc's "AC" key, the safety gate's review of it (the label under the click read by OCR,
the window under it asked of X11: what a model-grounded click pays), clicking it through
:class:`~actions.executor.PyAutoGuiDevice`, and recording the step (queueing the screenshot
for the PNG writer thread, and the trajectory line). The writer's own time is reported apart
(``png_writer_ms_off_path``): in a live run it overlaps the model call.

*naive* is what a first script does: ``pyautogui.screenshot()``, a PNG (Pillow defaults) in
base64 for an HTTP API, then ``pyautogui.click(x, y)`` with pyautogui's default 0.1 s pause.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deskpilot.actions.approval import DenyAll
from deskpilot.actions.executor import PyAutoGuiDevice, execute
from deskpilot.actions.gate import Gate
from deskpilot.actions.parse import parse_action
from deskpilot.actions.policy import Policy, Scope
from deskpilot.actions.schema import action_grammar, describe_actions, max_answer_chars
from deskpilot.actions.types import summarize
from deskpilot.actions.validate import validate
from deskpilot.agent.argtypes import size
from deskpilot.agent.clock import SystemClock
from deskpilot.agent.loop import HISTORY_STEPS
from deskpilot.agent.records import Outcome, StepRecord, Timings
from deskpilot.agent.rundir import RunDir
from deskpilot.grounding.capture import MssScreen
from deskpilot.grounding.ocr import RapidOcrReader
from deskpilot.grounding.preprocess import DEFAULT_MAX_PATCHES, prepare
from deskpilot.grounding.stable import wait_stable
from deskpilot.grounding.windows import open_window_probe
from deskpilot.grounding.xvfb import launched, run_display
from deskpilot.models.prompt import agent_prompt
from deskpilot.models.runtime import Request

log = logging.getLogger(__name__)

CALC_AT = (400, 150)
# xcalc's "AC" key in screen points with the window at CALC_AT (no window manager, so the
# position does not depend on the screen size). Clearing a calculator is harmless to repeat.
AC_BOX = (589, 216, 614, 236)
TASK = "Clear the calculator."
OURS_PHASES = ("capture", "preprocess", "handoff", "validate", "gate", "act", "record")
NAIVE_PHASES = ("capture", "encode", "base64", "click")
NAIVE_PAUSE_S = 0.1  # pyautogui.PAUSE's default: what a loop that never changes it pays
WARMUP_STEPS = 2     # first calls open connections and fill caches; not timed
TARGETS = {"1080p_ms": 25, "4k_ms": 60, "ratio": 10}
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((1920, 1080), (3840, 2160))
WORKER_TIMEOUT_S = 900.0


class BenchError(RuntimeError):
    """A benchmark worker could not run or gave no figures."""


def bench_overhead(sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, steps: int = 30,
                   max_patches: int = DEFAULT_MAX_PATCHES) -> dict[str, Any]:
    """Time ours and the naive loop at each screen size, each size in a fresh process."""
    figures = {f"{w}x{h}": measure_size(w, h, steps=steps, max_patches=max_patches)
               for w, h in sizes}
    return {"sizes": figures, "steps": steps, "cpu": os.cpu_count(), "targets": dict(TARGETS)}


def measure_size(width: int, height: int, *, steps: int = 30,
                 max_patches: int = DEFAULT_MAX_PATCHES) -> dict[str, Any]:
    """Run :func:`bench_size` in a fresh interpreter and return the figures it prints."""
    argv = [sys.executable, "-P", "-m", "deskpilot.agent.bench.overhead",
            "--one", f"{width}x{height}", "--steps", str(steps), "--max-patches", str(max_patches)]
    log.info("running %s", " ".join(argv))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"the {width}x{height} worker ran past {WORKER_TIMEOUT_S:g}s") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BenchError(f"the {width}x{height} worker failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def bench_size(width: int, height: int, *, steps: int = 30,
               max_patches: int = DEFAULT_MAX_PATCHES) -> dict[str, Any]:
    """Time ``steps`` steps of ours and of the naive loop on a private Xvfb with xcalc.

    Must run in a process that has not imported pyautogui yet (see the module docstring).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if "pyautogui" in sys.modules:
        raise BenchError("pyautogui is already bound to a display in this process; run "
                         "`python -m deskpilot.agent.bench.overhead --one WxH` instead")
    # Xvfb is an X11 session; saying so lets pyscreeze take its X11 path (scrot), which is
    # what pyautogui.screenshot() does on a person's X11 desktop.
    os.environ["XDG_SESSION_TYPE"] = "x11"
    with ExitStack() as stack:
        display, _ = stack.enter_context(run_display(new=True, size=(width, height)))
        stack.enter_context(launched(
            ["xcalc", "-geometry", f"+{CALC_AT[0]}+{CALC_AT[1]}"], display, window="Calculator"))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deskpilot-bench-")))
        screen = MssScreen(1)
        stack.callback(screen.close)
        # The window is mapped before its keys are drawn: wait until the drawing is done.
        wait_stable(screen, SystemClock(), timeout_s=5.0)
        device = PyAutoGuiDevice()  # imports pyautogui, now bound to this display
        record = RunDir(tmp / "runs")
        ours = _Ours(screen, device, record, _gate(display, record), max_patches=max_patches,
                     size=(width, height))
        ours_laps = [ours.step(i) for i in range(1, WARMUP_STEPS + steps + 1)][WARMUP_STEPS:]
        naive = _Naive(*_naive_grabber())
        naive_laps = [naive.step() for _ in range(WARMUP_STEPS + steps)][WARMUP_STEPS:]
    ours_fig = _medians(ours_laps, OURS_PHASES)
    ours_fig["total_without_gate_ms"] = round(statistics.median(
        sum(s[p] for p in OURS_PHASES if p != "gate") for s in ours_laps), 2)
    ours_fig["png_writer_ms_off_path"] = round(
        statistics.median(s["png_writer"] for s in ours_laps), 2)
    naive_fig = _medians(naive_laps, NAIVE_PHASES)
    pause_ms = NAIVE_PAUSE_S * 1000
    naive_fig["total_no_pause_ms"] = round(naive_fig["total_ms"] - pause_ms, 2)
    naive_fig["capture_path"] = naive.path
    naive_fig["png_kb"] = round(naive.payload_bytes * 3 / 4 / 1024, 1)
    image = ours.last_request.image
    return {
        "ours": ours_fig,
        "naive": naive_fig,
        "naive_pause_ms": pause_ms,
        "ratio": round(naive_fig["total_ms"] / ours_fig["total_ms"], 2),
        "ratio_no_pause": round(naive_fig["total_no_pause_ms"] / ours_fig["total_ms"], 2),
        "model_image": None if image is None else f"{image.width}x{image.height}",
        "image_tokens": None if image is None else image.n_patches,
        "steps": steps,
    }


@dataclass
class _Laps:
    """Milliseconds per named phase of one step."""

    ms: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.ms[phase] = (now - self._last) * 1000
        self._last = now


def _gate(display: str, record: RunDir) -> Gate:
    """The gate a task in words runs behind, with nobody to ask (clearing xcalc asks nothing)."""
    policy = Policy(scope=Scope(), reader=RapidOcrReader(), windows=open_window_probe(display),
                    task_text=[TASK])
    return Gate(policy, DenyAll(), record)


class _Ours:
    """The agent's hot path without the model, one step per call."""

    def __init__(self, screen: MssScreen, device: PyAutoGuiDevice, record: RunDir, gate: Gate,
                 *, max_patches: int, size: tuple[int, int]) -> None:
        self._screen, self._device, self._record = screen, device, record
        self._gate = gate
        self._max_patches = max_patches
        # Built once per run in the loop too.
        self._reference = describe_actions(None)
        self._grammar = action_grammar(None)
        self._answer_limit = max_answer_chars(None) + 8
        width, height = size
        x1, y1, x2, y2 = AC_BOX
        box = [round(x1 / width, 4), round(y1 / height, 4),
               round(x2 / width, 4), round(y2 / height, 4)]
        self._answer = json.dumps({"action": "click", "target": "AC key", "box": box})
        self._steps: list[StepRecord] = []
        self.last_request = Request(prompt="")

    def step(self, index: int) -> dict[str, float]:
        """One timed step: capture, preprocess, handoff, validate, gate, act, record."""
        lap = _Laps()
        frame = self._screen.grab()
        lap("capture")
        image = prepare(frame, max_patches=self._max_patches)
        lap("preprocess")
        prompt = agent_prompt(TASK, actions_reference=self._reference,
                              history=[s.to_prompt_line() for s in self._steps[-HISTORY_STEPS:]])
        self.last_request = Request(prompt=prompt, image=image, grammar=self._grammar,
                                    max_answer_tokens=self._answer_limit)
        lap("handoff")
        resolved = validate(parse_action(self._answer), image.view)
        lap("validate")
        concern = self._gate.check(resolved, frame)
        if concern is not None:
            raise BenchError(f"the gate stopped the benchmark's click: {concern.reason}")
        lap("gate")
        execute(resolved, self._device)
        lap("act")
        shot = self._record.save_screenshot(index, frame.rgb)
        ms = lap.ms
        step = StepRecord(
            index=index, outcome=Outcome.EXECUTED, answer=self._answer,
            summary=summarize(resolved.action), action=resolved.action.model_dump(),
            points=tuple((p.x, p.y) for p in resolved.points), screenshot=shot,
            image_size=(image.width, image.height), image_tokens=image.n_patches,
            timings=Timings(capture=ms["capture"] / 1000, preprocess=ms["preprocess"] / 1000,
                            model=ms["handoff"] / 1000,
                            act=(ms["validate"] + ms["act"]) / 1000))
        self._record.append(step)
        lap("record")
        self._steps.append(step)
        # The PNG is encoded by the run directory's writer thread while, in a real step, the
        # model is busy for a second or more. Here no model call separates the steps, so wait
        # for the writer outside the timed phases and report its cost on its own.
        t0 = time.perf_counter()
        self._record.flush()
        ms["png_writer"] = (time.perf_counter() - t0) * 1000
        return ms


def _naive_grabber() -> tuple[Callable[[], Any], str]:
    """``pyautogui.screenshot`` where pyscreeze can take one, else the path it takes with Pillow.

    pyscreeze 1.0 on Linux shells out to scrot (X11 sessions) and otherwise, with Pillow >= 9.2
    and gnome-screenshot installed, calls ``PIL.ImageGrab.grab()``, which reads the screen over
    XCB in memory (gnome-screenshot itself is only Pillow's fallback). On a bare Xvfb with
    neither tool pyscreeze raises, so the same ``ImageGrab.grab()`` is called directly.
    """
    import pyautogui
    import pyscreeze
    from PIL import ImageGrab, features

    if getattr(pyscreeze, "GNOMESCREENSHOT_EXISTS", False):
        return pyautogui.screenshot, "pyautogui.screenshot -> PIL.ImageGrab.grab (XCB)"
    if getattr(pyscreeze, "RUNNING_X11", False) and getattr(pyscreeze, "SCROT_EXISTS", False):
        return pyautogui.screenshot, "pyautogui.screenshot -> scrot + temporary PNG"
    if features.check("xcb"):
        return ImageGrab.grab, ("PIL.ImageGrab.grab over XCB (pyscreeze's path when "
                                "gnome-screenshot is installed; neither it nor scrot is here)")
    raise BenchError("pyautogui.screenshot cannot work here: install scrot, or a Pillow "
                     "built with XCB")


class _Naive:
    """The naive loop: screenshot, PNG, base64, click with pyautogui's default pause."""

    def __init__(self, grab: Callable[[], Any], path: str) -> None:
        import pyautogui

        self._gui: Any = pyautogui
        self._grab = grab
        self.path = path
        x1, y1, x2, y2 = AC_BOX
        self._point = ((x1 + x2) // 2, (y1 + y2) // 2)
        self.payload_bytes = 0

    def step(self) -> dict[str, float]:
        """One timed step; pyautogui.PAUSE is the default 0.1 s during it, 0 after."""
        lap = _Laps()
        shot = self._grab()
        lap("capture")
        buf = io.BytesIO()
        shot.save(buf, format="PNG")
        lap("encode")
        self.payload_bytes = len(base64.b64encode(buf.getvalue()))
        lap("base64")
        saved, self._gui.PAUSE = self._gui.PAUSE, NAIVE_PAUSE_S
        try:
            self._gui.click(*self._point)
            lap("click")
        finally:
            self._gui.PAUSE = saved
        return lap.ms


def _medians(laps: list[dict[str, float]], phases: Sequence[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {f"{p}_ms": round(statistics.median(s[p] for s in laps), 2)
                               for p in phases}
    totals = [sum(s[p] for p in phases) for s in laps]
    figures["total_ms"] = round(statistics.median(totals), 2)
    figures["min_total_ms"] = round(min(totals), 2)
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    """Print the benchmark's figures as JSON (``--one WxH``: one size, in this process)."""
    parser = argparse.ArgumentParser(prog="deskpilot bench overhead",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--one", type=size, metavar="WxH",
                        help="time one size in this process (the worker mode)")
    parser.add_argument("--sizes", type=size, nargs="+", metavar="WxH",
                        default=list(DEFAULT_SIZES))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--max-patches", type=int, default=DEFAULT_MAX_PATCHES)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.one is not None:
        width, height = args.one
        figures = bench_size(width, height, steps=args.steps, max_patches=args.max_patches)
        print(json.dumps(figures))
    else:
        print(json.dumps(bench_overhead(args.sizes, args.steps, args.max_patches), indent=2))


if __name__ == "__main__":
    main()
