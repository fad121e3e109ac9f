"""How long grounding takes: real apps on a private Xvfb, read and matched step by step.

Two parts. The first times OCR groundings on xcalc, xedit and xterm (full screen and a region),
every read a full one. The second is the realistic case: task steps clicking galculator's keys
(a GTK app publishing its accessibility tree), where each step changes a small part of the
screen. It times a full OCR read, an incremental read after each change (and checks it equals
the full one), a walk of the accessibility tree, a grounded click from grab to input with the
gate, and a verified cache hit with the gate; then task steps clicking xcalc's keys (no tree)
grounded by OCR, read incrementally, from grab to input with the gate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from deskpilot.agent.argtypes import size
from deskpilot.grounding.capture import MssScreen
from deskpilot.grounding.ocr import PixelBox, RapidOcrReader, TextReader
from deskpilot.grounding.textmatch import TextLookupError, find_text
from deskpilot.grounding.xvfb import display_env, launched, run_display, wait_for_window

log = logging.getLogger(__name__)

CALC_AT = (400, 150)
EDIT_GEOMETRY = "700x500+900+150"
TERM_GEOMETRY = "80x20+100+650"
QUERIES = ("AC", "Save", "sin", "Quit", "DEG")   # all on screen: xcalc buttons, xedit commands
CALC_QUERIES = ("AC", "sin", "DEG")
REGION_MARGIN = 20
# Windows are mapped before their widgets are drawn; without a window manager nothing says
# when painting is done, and a blank first frame would time an empty read.
SETTLE_S = 0.5


def bench_ocr(width: int = 1920, height: int = 1080, steps: int = 10) -> dict[str, object]:
    """Time ``steps`` full-screen and ``steps`` xcalc-region groundings (read + find_text)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    reader = RapidOcrReader(incremental=False)  # every read a full one, as before
    with run_display(new=True, size=(width, height)) as (display, _), _apps(display) as apps:
        calc = _window_box(display, "Calculator", width, height)
        time.sleep(SETTLE_S)
        screen = MssScreen(1)
        try:
            first_ms, _, _ = _ground(reader, screen.grab().rgb, QUERIES[0])
            full = [_ground(reader, screen.grab().rgb, QUERIES[i % len(QUERIES)])
                    for i in range(steps)]
            part = [_ground(reader, screen.grab().rgb, CALC_QUERIES[i % len(CALC_QUERIES)], calc)
                    for i in range(steps)]
        finally:
            screen.close()
    times = [ms for ms, _, _ in full]
    region_times = [ms for ms, _, _ in part]
    return {
        "reader": reader.name,
        "size": f"{width}x{height}",
        "apps": apps,
        "steps": steps,
        "first_call_ms": round(first_ms, 1),
        "median_ms": _pct(times, 50),
        "p90_ms": _pct(times, 90),
        "min_ms": round(min(times), 1),
        "text_items": full[-1][2],
        "found": sum(ok for _, ok, _ in full),
        "region": list(calc),
        "region_median_ms": _pct(region_times, 50),
        "region_min_ms": round(min(region_times), 1),
        "region_found": sum(ok for _, ok, _ in part),
    }


GTK_KEYS = ("7", "*", "8", "=", "C")
# xcalc publishes no accessibility tree: its keys are grounded by OCR, read incrementally.
XCALC_KEYS = ("1", "2", "3", "AC")
# A step's time from grab to input: what the step did before the input device returned,
# keeping its screenshot included (no input is sent before the record is on disk); the wait
# for the screen to settle comes after.
CLICK_PHASES = ("capture", "cache", "a11y", "ocr", "policy", "record", "act")


def bench_gtk(width: int = 1920, height: int = 1080, rounds: int = 3) -> dict[str, object]:
    """Time galculator's keys clicked by task steps: reads, tree walks, clicks, cache hits."""
    from deskpilot.agent.tasks.cache import CacheMode
    from deskpilot.agent.tasks.file import load_task
    from deskpilot.agent.tasks.kit import ModelAccess
    from deskpilot.agent.tasks.live import Place, live_services
    from deskpilot.agent.tasks.results import Source
    from deskpilot.agent.tasks.run import run_task

    if shutil.which("galculator") is None:
        return {"gtk": "galculator is not installed (make deps)"}
    with tempfile.TemporaryDirectory(prefix="deskpilot-bench-") as tmp:
        root = Path(tmp)
        task = load_task(_clicks(root / "calc.yaml", "galculator", "galculator",
                                 GTK_KEYS * rounds))
        xcalc = load_task(_clicks(root / "xcalc.yaml", "xcalc -geometry +400+150", "Calculator",
                                  XCALC_KEYS * rounds))
        place = Place(new_display=True, screen_size=(width, height), runs_root=root / "runs",
                      cache=CacheMode.READ_WRITE, cache_dir=root / "cache")
        full, incremental, same = [], [], True
        with live_services(place, ModelAccess(None)) as (services, _):
            fresh = RapidOcrReader(incremental=False)
            kept = RapidOcrReader()
            frames: list[np.ndarray] = []

            def on_step(step: object) -> None:
                frames.append(services.screen.grab().rgb)

            grounded = run_task(task, services, on_step=on_step)
            hits = run_task(task, services)
            by_text = run_task(xcalc, replace(services, cache_mode=CacheMode.OFF))
            kept.read(frames[0])
            for rgb in frames[1:]:
                t = time.perf_counter()
                inc = kept.read(rgb)
                incremental.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                ref = fresh.read(rgb)
                full.append((time.perf_counter() - t) * 1000)
                same = same and inc == ref
    clicks = [_click_ms(s.timings) for s in grounded.steps if s.source is Source.A11Y]
    # Each grounded step walks the tree once (the screen changed since the last walk).
    walks = [s.timings["a11y"] * 1000 for s in grounded.steps if "a11y" in s.timings]
    cached = [_click_ms(s.timings) for s in hits.steps if s.source is Source.CACHE]
    # The first xcalc step reads the whole screen; the others re-read what the last one changed.
    read = [_click_ms(s.timings) for s in by_text.steps[1:] if s.source is Source.OCR]
    return {
        "gtk_app": "galculator",
        "gtk_steps": len(task.steps),
        "gtk_passed": [grounded.status.value, hits.status.value],
        "full_median_ms": _pct(full, 50) if full else None,
        "incremental_median_ms": _pct(incremental, 50) if incremental else None,
        "incremental_speedup": round(float(np.median(full) / np.median(incremental)), 1)
        if full and incremental else None,
        "incremental_equals_full": same,
        "a11y_median_ms": _pct(walks, 50) if walks else None,
        "click_median_ms": _pct(clicks, 50) if clicks else None,
        "click_sources": sorted({str(s.source) for s in grounded.steps}),
        "ocr_click_app": "xcalc",
        "ocr_click_passed": by_text.status.value,
        "ocr_click_median_ms": _pct(read, 50) if read else None,
        "ocr_click_first_ms": round(_click_ms(by_text.steps[0].timings), 1)
        if by_text.steps else None,
        "cache_hit_median_ms": _pct(cached, 50) if cached else None,
        "cache_hits": len(cached),
        "reader_stats": str(kept.stats),
    }


def _clicks(path: Path, command: str, window: str, keys: Sequence[str]) -> Path:
    """A task file launching ``command`` and clicking ``keys`` by their text, in order."""
    steps = "".join(f"  - click: {json.dumps(k)}\n" for k in keys)
    path.write_text(f"name: bench {path.stem}\nsetup:\n  launch:\n    - command: {command}\n"
                    f"      wait_for: {{window: {window}}}\nsteps:\n{steps}", encoding="utf-8")
    return path


def _click_ms(timings: dict[str, float]) -> float:
    return sum(timings.get(phase, 0.0) for phase in CLICK_PHASES) * 1000


def _ground(reader: TextReader, rgb: np.ndarray, query: str,
            region: PixelBox | None = None) -> tuple[float, bool, int]:
    """One timed grounding: (milliseconds, whether the query was found, lines read)."""
    start = time.perf_counter()
    lines = reader.read(rgb, region)
    try:
        match = find_text(lines, query, region=region)
    except TextLookupError as exc:
        found = False
        log.warning("%s", exc)
    else:
        found = True
        log.debug("%r -> %r at %s (%s)", query, match.text, match.box, match.how)
    ms = (time.perf_counter() - start) * 1000
    log.info("%s%s: %.0f ms, %d lines", query, "" if region is None else " (region)", ms,
             len(lines))
    return ms, found, len(lines)


def _pct(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1)


@contextlib.contextmanager
def _apps(display: str) -> Iterator[list[str]]:
    """xcalc and xedit (on a small text file), and xterm when it is installed."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deskpilot-bench-")))
        notes = tmp / "notes.txt"
        notes.write_text("Meeting notes\nBuy milk and bread\n", encoding="utf-8")
        stack.enter_context(launched(
            ["xcalc", "-geometry", f"+{CALC_AT[0]}+{CALC_AT[1]}"], display, window="Calculator"))
        stack.enter_context(launched(
            ["xedit", "-geometry", EDIT_GEOMETRY, str(notes)], display, window="xedit"))
        apps = ["xcalc", "xedit"]
        if shutil.which("xterm") is not None:
            stack.enter_context(launched(
                ["xterm", "-geometry", TERM_GEOMETRY], display, window="xterm"))
            apps.append("xterm")
        yield apps


def _window_box(display: str, name: str, width: int, height: int) -> PixelBox:
    """The named window's rectangle with a margin, clipped to the screen."""
    window = wait_for_window(display, name)
    out = subprocess.run(["xdotool", "getwindowgeometry", "--shell", window],
                         env=display_env(display), capture_output=True,
                         text=True, check=True)
    geo = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    x, y, w, h = (int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    m = REGION_MARGIN
    return (max(x - m, 0), max(y - m, 0), min(x + w + m, width), min(y + h + m, height))


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the figures as JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="deskpilot bench ocr",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--screen-size", type=size, default=(1920, 1080), metavar="WxH",
                        help="display size (default 1920x1080)")
    parser.add_argument("--steps", type=int, default=10, metavar="N",
                        help="groundings to time (default 10)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="rounds of galculator keys in the GTK sequence (default 3)")
    args = parser.parse_args(argv)
    width, height = args.screen_size
    logging.basicConfig(level=logging.WARNING)
    figures = bench_ocr(width, height, args.steps)
    figures.update(bench_gtk(width, height, args.rounds))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
