"""``deskpilot eval make-set DIR``: a grounding set anyone can make, labelled without a model.

Real X apps (xcalc, xedit on a small file, xmessage) are started at known places on a private
Xvfb display of each size asked for (1080p and 4K by default) and the screen is captured. The
labels come from two sources that need no model: the X server's own window geometry (one
record per window), and OCR-read text boxes, each kept only when the text is one the app is
known to show, it appears exactly once on the screen, and its box lies inside that app's
window as the X server reports it. The set is written in ScreenSpot-v2's layout
(``screenspot_desktop_v2.json`` beside ``screenspotv2_image/``), with ``truth-answers.jsonl``:
the true boxes as native grounding answers, one per record in order, for ``--replay``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from deskpilot.agent.argtypes import size
from deskpilot.agent.cli.console import say
from deskpilot.agent.eval.screenspot import V2_IMAGES
from deskpilot.grounding.capture import MssScreen
from deskpilot.grounding.geometry import PixelBox
from deskpilot.grounding.ocr import RapidOcrReader, TextReader, box_centre_inside
from deskpilot.grounding.xvfb import DisplayError, display_env, launched, run_display

log = logging.getLogger(__name__)

DATA_FILE = "screenspot_desktop_v2.json"
TRUTH_ANSWERS = "truth-answers.jsonl"
DEFAULT_SIZES = ((1920, 1080), (3840, 2160))
SETTLE_S = 0.6  # no window manager says when widgets are painted
NOTES = "Meeting notes\nBuy milk and bread\n"


@dataclass(frozen=True, slots=True)
class App:
    """An X app placed at a known spot, what it is called, and the text it is known to show."""

    name: str
    title: str  # set with -title, to find its window
    describe: str  # how an instruction names its window
    argv: tuple[str, ...]
    at: tuple[int, int]
    buttons: frozenset[str]  # labels read as "the "X" button"
    texts: frozenset[str] = frozenset()  # other text read as "the text "X""


def apps(notes: Path) -> tuple[App, ...]:
    """The apps of a set (the ones the tests already install: x11-apps, x11-utils)."""
    calc_keys = frozenset({*"0123456789", "AC", "DRG", "INV", "sin", "cos", "tan", "log",
                           "ln", "STO", "RCL", "SUM", "EXC", "EE"})
    return (
        App("xcalc", "deskpilot-calc", "the calculator window", ("xcalc",), (60, 60),
            calc_keys),
        App("xedit", "deskpilot-edit", "the text editor window",
            ("xedit", "-geometry", "560x360", str(notes)), (420, 60),
            frozenset({"Quit", "Save", "Load"}), frozenset(NOTES.strip().splitlines())),
        App("xmessage", "deskpilot-message", "the message dialog",
            ("xmessage", "-buttons", "Continue,Cancel", "Hello from deskpilot"), (1100, 120),
            frozenset({"Continue", "Cancel"}), frozenset({"Hello from deskpilot"})),
    )


def make_set(directory: Path, sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, *,
             reader: TextReader | None = None) -> list[dict[str, Any]]:
    """Render, label and write the set; the records written."""
    reader = reader or RapidOcrReader()
    images = directory / V2_IMAGES
    images.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    for width, height in sizes:
        name = f"desk-{width}x{height}.png"
        rgb, labels = _render(width, height, reader)
        Image.fromarray(rgb).save(images / name)
        for label in labels:
            x1, y1, x2, y2 = label["box"]
            records.append({"img_filename": name, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "instruction": label["instruction"], "data_type": label["type"],
                            "data_source": label["source"]})
        log.info("%dx%d: %d records", width, height, len(labels))
    (directory / DATA_FILE).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    _write_truth(directory, records, dict(sizes_of(images, records)))
    return records


def sizes_of(images: Path, records: list[dict[str, Any]]) -> Iterator[tuple[str, tuple[int, int]]]:
    """(image name, its size) for every image the records use."""
    for name in sorted({r["img_filename"] for r in records}):
        with Image.open(images / name) as img:
            yield name, img.size


def _write_truth(directory: Path, records: list[dict[str, Any]],
                 sizes: dict[str, tuple[int, int]]) -> None:
    """The true boxes as native grounding answers (relative, four decimals), in record order."""
    with (directory / TRUTH_ANSWERS).open("w", encoding="utf-8") as fh:
        for r in records:
            w, h = sizes[r["img_filename"]]
            x, y, bw, bh = r["bbox"]
            box = (x / w, y / h, (x + bw) / w, (y + bh) / h)
            fh.write(json.dumps({"answer": "[" + ", ".join(f"{v:.4f}" for v in box) + "]"})
                     + "\n")


def _render(width: int, height: int, reader: TextReader) -> tuple[Any, list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory(prefix="deskpilot-makeset-") as tmp:
        notes = Path(tmp) / "notes.txt"
        notes.write_text(NOTES, encoding="utf-8")
        with run_display(new=True, size=(width, height)) as (display, _), \
                _started(display, apps(notes)) as windows:
            time.sleep(SETTLE_S)
            screen = MssScreen(1)
            try:
                rgb = screen.grab().rgb.copy()
            finally:
                screen.close()
    return rgb, _labels(rgb, windows, reader)


@contextlib.contextmanager
def _started(display: str, chosen: Sequence[App]) -> Iterator[list[tuple[App, PixelBox]]]:
    """Start each app; yield each with its window's rectangle as the X server reports it."""
    with contextlib.ExitStack() as stack:
        windows = []
        for app in chosen:
            argv = [*app.argv[:1], "-title", app.title, *app.argv[1:]]
            if "-geometry" in argv:
                i = argv.index("-geometry") + 1
                argv[i] = f"{argv[i]}+{app.at[0]}+{app.at[1]}"
            else:
                argv[1:1] = ["-geometry", f"+{app.at[0]}+{app.at[1]}"]
            stack.enter_context(launched(argv, display, window=app.title))
            windows.append((app, _geometry(display, app.title)))
        yield windows


def _geometry(display: str, title: str) -> PixelBox:
    """The window's rectangle from the X server (xdotool), in screen pixels."""
    out = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", title,
                          "getwindowgeometry", "--shell"], env=display_env(display),
                         capture_output=True, text=True, check=True, timeout=10)
    geo = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    x, y, w, h = (int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    return (x, y, x + w, y + h)


def _labels(rgb: Any, windows: list[tuple[App, PixelBox]],
            reader: TextReader) -> list[dict[str, Any]]:
    """Window records from geometry, then text records from OCR that pass every check."""
    labels = [{"instruction": app.describe, "box": box, "type": "window",
               "source": f"x11-geometry:{app.name}"} for app, box in windows]
    seen: dict[str, list[PixelBox]] = {}
    for line in reader.read(rgb):
        pieces = [(line.text.strip(), line.box)]
        if len(line.words) > 1:
            pieces += [(w.text.strip(), w.box) for w in line.words]
        for text, box in pieces:
            seen.setdefault(text, []).append(box)
    for app, window in windows:
        for text in sorted(app.buttons | app.texts):
            boxes = seen.get(text, [])
            if len(boxes) != 1:  # unread, or ambiguous on this screen
                log.info("%s: %r read %d times: left out", app.name, text, len(boxes))
                continue
            if not box_centre_inside(boxes[0], window):
                log.info("%s: %r read outside its window: left out", app.name, text)
                continue
            kind = "text" if text in app.texts else "button"
            instruction = (f'the text "{text}"' if kind == "text"
                           else f'the "{text}" button in {app.describe}')
            labels.append({"instruction": instruction, "box": boxes[0], "type": "text",
                           "source": f"ocr:{app.name}"})
    return labels


def main(argv: Sequence[str] | None = None) -> int:
    """``deskpilot eval make-set DIR [--sizes WxH,...]``; the exit status."""
    p = argparse.ArgumentParser(prog="deskpilot eval make-set",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("directory", type=Path, metavar="DIR")
    p.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in DEFAULT_SIZES),
                   metavar="WxH,...", help="display sizes (default 1920x1080,3840x2160)")
    args = p.parse_args(argv)
    try:
        sizes = [size(s) for s in args.sizes.split(",") if s.strip()]
    except (argparse.ArgumentTypeError, ValueError) as exc:
        say(f"deskpilot: --sizes: {exc}", file=sys.stderr)
        return 2
    try:
        records = make_set(args.directory, sizes)
    except (DisplayError, subprocess.SubprocessError, OSError) as exc:
        say(f"deskpilot: could not make the set: {exc}", file=sys.stderr)
        return 1
    kinds: dict[str, int] = {}
    for r in records:
        kinds[r["data_type"]] = kinds.get(r["data_type"], 0) + 1
    say(f"{len(records)} records ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) "
        f"in {args.directory / DATA_FILE}; true answers for --replay in "
        f"{args.directory / TRUTH_ANSWERS}")
    return 0


__all__ = ["App", "apps", "main", "make_set"]
