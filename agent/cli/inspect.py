"""``deskpilot inspect``: what a task step can target on the screen now, and the step that would.

Accessibility elements (on a live screen whose apps publish a tree) and OCR text, each with its
box and the exact step line that targets it, as a list on the terminal and, with ``--out``, as
an overlay PNG and an HTML page beside it.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deskpilot.agent.cli.console import say
from deskpilot.agent.cli.errors import EXIT_OK, UserError
from deskpilot.grounding.a11y import CONTAINERS, A11yElement, A11yLookupError, find_element
from deskpilot.grounding.geometry import PixelBox
from deskpilot.grounding.ocr import TextLine
from deskpilot.grounding.textmatch import TextLookupError, find_text, plain_symbols
from deskpilot.grounding.windows import WindowInfo

A11Y_COLOUR = (0, 170, 0)
OCR_COLOUR = (255, 0, 255)
REGION_MARGIN = 8  # pixels around a text box in the region of a step that needs one


@dataclass(frozen=True, slots=True)
class Target:
    """One thing a step can target: where it came from, what it is, its box and its step."""

    source: str  # "a11y" or "ocr"
    text: str
    role: str
    box: PixelBox
    step: str

    def to_json(self) -> dict[str, object]:
        """The target as plain JSON."""
        return {"source": self.source, "text": self.text, "role": self.role,
                "box": list(self.box), "step": self.step}


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def ocr_targets(lines: Sequence[TextLine], width: int, height: int) -> list[Target]:
    """A target per line read: ``click: "TEXT"`` where the text is unique on the screen, else
    the same text narrowed to a region around its box."""
    out = []
    for line in lines:
        text = line.text.strip()
        if not text:
            continue
        # What a person would type for it ("=" for OCR's ideograph), if that finds it too.
        typed = plain_symbols(text)
        if typed != text and _finds(lines, typed, line.box):
            text = typed
        unique = _finds(lines, text, line.box)
        if unique:
            step = f"click: {_quoted(text)}"
        else:
            step = f"click: {{text: {_quoted(text)}, region: {_around(line.box, width, height)}}}"
        out.append(Target("ocr", text, "text", line.box, step))
    return out


def _finds(lines: Sequence[TextLine], text: str, box: PixelBox) -> bool:
    """Whether ``click: text`` finds the line at ``box`` and nothing else."""
    try:
        return find_text(lines, text).box == box
    except TextLookupError:
        return False


def a11y_targets(elements: Sequence[A11yElement], width: int, height: int) -> list[Target]:
    """A target per accessible element (windows and other containers left out: their names
    are titles): ``click: {name, role}``, narrowed to a region around its box when another
    element has the same name and role (the step must find this one)."""
    out = []
    for e in elements:
        if e.role in CONTAINERS:
            continue
        try:
            unique = find_element(elements, e.name, role=e.role) is e
        except A11yLookupError:
            unique = False
        step = e.step() if unique else e.step(_around(e.box, width, height))
        out.append(Target("a11y", e.name, e.role, e.box, step))
    return out


def _around(box: PixelBox, width: int, height: int) -> list[int]:
    x1, y1, x2, y2 = box
    return [max(x1 - REGION_MARGIN, 0), max(y1 - REGION_MARGIN, 0),
            min(x2 + REGION_MARGIN, width), min(y2 + REGION_MARGIN, height)]


def in_window(elements: Sequence[A11yElement], lines: Sequence[TextLine], window: str,
              x11: Sequence[WindowInfo] = ()) -> tuple[list[A11yElement], list[TextLine]]:
    """The elements of windows whose accessible name holds ``window`` (any case), else the
    boxes of X11 windows whose title or class holds it (apps without a tree); and the lines
    inside those boxes. No such window raises UserError naming the windows there are."""
    wanted = window.casefold()
    kept = [e for e in elements if wanted in e.window.casefold()]
    boxes = [e.box for e in kept] or [
        w.box for w in x11 if w.box is not None
        and any(wanted in part.casefold() for part in (w.title, *w.wm_class))]
    if not boxes:
        names = sorted({e.window for e in elements} | {w.title for w in x11 if w.title})
        raise UserError(f"no window named like {window!r}"
                        + (f" (windows: {', '.join(map(repr, names))})" if names else ""))
    x1, y1 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x2, y2 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    inside = [line for line in lines
              if x1 <= (line.box[0] + line.box[2]) / 2 < x2
              and y1 <= (line.box[1] + line.box[3]) / 2 < y2]
    return kept, inside


def overlay(rgb: np.ndarray, targets: Sequence[Target]) -> np.ndarray:
    """The screen with every target outlined: green for accessibility, magenta for OCR."""
    out = rgb.copy()
    height, width = out.shape[:2]
    for target in targets:
        colour = A11Y_COLOUR if target.source == "a11y" else OCR_COLOUR
        x1, y1 = max(target.box[0], 0), max(target.box[1], 0)
        x2, y2 = min(target.box[2], width) - 1, min(target.box[3], height) - 1
        if x2 <= x1 or y2 <= y1:
            continue
        out[y1, x1:x2 + 1] = colour
        out[y2, x1:x2 + 1] = colour
        out[y1:y2 + 1, x1] = colour
        out[y1:y2 + 1, x2] = colour
    return out


def page(targets: Sequence[Target], image: str) -> str:
    """An HTML page: the overlay, then a table of the targets and their steps."""
    rows = "".join(
        f"<tr><td>{html.escape(t.source)}</td><td>{html.escape(t.role)}</td>"
        f"<td>{html.escape(t.text)}</td><td>{html.escape(str(list(t.box)))}</td>"
        f"<td><code>{html.escape(t.step)}</code></td></tr>" for t in targets)
    return ("<!doctype html><meta charset=utf-8><title>deskpilot inspect</title>"
            "<style>body{font-family:sans-serif}td{padding:2px 8px}img{max-width:100%}"
            "</style><h1>What a step can target</h1>"
            "<p>Green: accessibility elements; magenta: OCR text.</p>"
            f'<img src="{html.escape(image)}" alt="the screen with targets outlined">'
            "<table><tr><th>source</th><th>role</th><th>text</th><th>box</th><th>step</th>"
            f"</tr>{rows}</table>\n")


def inspect_command(*, image: Path | None, window: str | None, out: Path | None,
                    as_json: bool) -> int:
    """Read the screen (or ``image``), list its targets, and write the overlay when asked."""
    from deskpilot.grounding.ocr import OcrError, RapidOcrReader
    from deskpilot.grounding.visual import load_png, save_png

    elements: list[A11yElement] = []
    x11: list[WindowInfo] = []
    if image is not None:
        try:
            rgb = load_png(image)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {image}: {exc}") from None
    else:
        rgb, elements, x11 = _live_screen()
    try:
        lines = RapidOcrReader().read(rgb)
    except OcrError as exc:
        raise UserError(str(exc)) from None
    if window is not None:
        if image is not None:
            raise UserError("--window needs the live screen's accessibility tree (--screen)")
        elements, lines = in_window(elements, lines, window, x11)
    height, width = rgb.shape[:2]
    targets = a11y_targets(elements, width, height) + ocr_targets(lines, width, height)
    if as_json:
        say(json.dumps([t.to_json() for t in targets], ensure_ascii=False, indent=2))
    else:
        for t in targets:
            say(f"{t.source:<5} {t.role:<16} {t.box!s:<24} {t.step}")
        say(f"{len(elements)} accessible elements, {len(lines)} OCR lines")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_png(out / "overlay.png", overlay(rgb, targets))
        (out / "index.html").write_text(page(targets, "overlay.png"), encoding="utf-8")
        say(f"overlay: {out / 'overlay.png'}\nreport:  {out / 'index.html'}")
    return EXIT_OK


def _live_screen() -> tuple[np.ndarray, list[A11yElement], list[WindowInfo]]:
    """A screenshot of $DISPLAY's first monitor, its accessible elements, and its X11 windows
    (boxes in pixels)."""
    from deskpilot.grounding.a11y import A11yError, open_tree
    from deskpilot.grounding.capture import CaptureError, MssScreen
    from deskpilot.grounding.windows import WindowProbeError, open_window_probe

    try:
        with MssScreen(1) as screen:
            frame = screen.grab()
    except (CaptureError, ValueError) as exc:
        raise UserError(f"cannot read the screen: {exc}") from None
    found: list[A11yElement] = []
    tree = open_tree()
    if tree is not None:
        try:
            found = tree.elements()
        except A11yError:
            found = []
        finally:
            tree.close()
    windows: list[WindowInfo] = []
    probe = open_window_probe(os.environ.get("DISPLAY", ""))
    if probe is not None:
        try:
            windows = probe.windows()
        except WindowProbeError:
            windows = []
        finally:
            probe.close()
    pixels = frame.screen.pixel_box
    elements = [A11yElement(e.name, e.role, e.states, pixels(e.box), e.window) for e in found]
    x11 = [WindowInfo(w.id, w.title, w.wm_class, None if w.box is None else pixels(w.box))
           for w in windows]
    return frame.rgb, elements, x11
