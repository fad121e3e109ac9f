"""The latest screenshot drawn in the terminal, with the predicted box and click marked.

Each character cell shows two pixels stacked: the upper half block takes the top pixel as its
colour and the bottom pixel as its background. Cells are about twice as tall as wide, so the
picture keeps its aspect ratio without any correction.

A 1080p screen in a 40-column view puts some 50 screen pixels in each cell: the target is a
blob. When a target is marked and the whole screen would be that coarse, the view zooms on the
target instead, with a caption saying so; ``zoom = False`` always shows the whole screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

ZOOM_ABOVE = 8.0   # screen pixels per cell beyond which the whole screen is a blob
ZOOM_PIXELS = 3.0  # screen pixels per cell when zoomed, at least...
ZOOM_CONTEXT = 3.0  # ...and enough to show this many times the target's size
BOX_COLOUR = (255, 214, 0)
CLICK_COLOUR = (255, 40, 40)
_UPPER_HALF = "▀"


@dataclass(frozen=True, slots=True)
class Marks:
    """What to draw over the picture, in fractions of its width and height (0..1)."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    points: tuple[tuple[float, float], ...] = ()


def fit(image_w: int, image_h: int, cells_w: int, cells_h: int) -> tuple[int, int]:
    """The largest pixel size (width, height) of the picture that fits the cells; height even."""
    if min(image_w, image_h, cells_w, cells_h) <= 0:
        return 0, 0
    scale = min(cells_w / image_w, 2 * cells_h / image_h)
    width = max(1, round(image_w * scale))
    height = max(2, round(image_h * scale / 2) * 2)
    return min(width, cells_w), min(height, 2 * cells_h)


Fractions = tuple[float, float, float, float]


def zoom_region(image_w: int, image_h: int, cells_w: int, cells_h: int,
                marks: Marks) -> Fractions | None:
    """The part of the picture to show (fractions of it) when the whole would be a blob, or
    None: around the marks, :data:`ZOOM_PIXELS` screen pixels a cell, or enough to show
    :data:`ZOOM_CONTEXT` times their size, shaped like the cells, inside the picture."""
    if not (marks.boxes or marks.points) or min(image_w, image_h, cells_w, cells_h) <= 0:
        return None
    if max(image_w / cells_w, image_h / (2 * cells_h)) <= ZOOM_ABOVE:
        return None
    xs = [x for b in marks.boxes for x in (b[0], b[2])] + [p[0] for p in marks.points]
    ys = [y for b in marks.boxes for y in (b[1], b[3])] + [p[1] for p in marks.points]
    span_w, span_h = (max(xs) - min(xs)) * image_w, (max(ys) - min(ys)) * image_h
    per_cell = max(ZOOM_PIXELS, ZOOM_CONTEXT * span_w / cells_w,
                   ZOOM_CONTEXT * span_h / (2 * cells_h))
    width, height = min(image_w, cells_w * per_cell), min(image_h, 2 * cells_h * per_cell)
    if width >= image_w and height >= image_h:
        return None
    cx, cy = (min(xs) + max(xs)) / 2 * image_w, (min(ys) + max(ys)) / 2 * image_h
    left = min(max(0.0, cx - width / 2), image_w - width)
    top = min(max(0.0, cy - height / 2), image_h - height)
    return (left / image_w, top / image_h, (left + width) / image_w, (top + height) / image_h)


def within(marks: Marks, region: Fractions) -> Marks:
    """``marks`` in fractions of ``region`` (itself in fractions of the picture)."""
    x1, y1, x2, y2 = region
    w, h = x2 - x1, y2 - y1
    return Marks(
        boxes=tuple(((a - x1) / w, (b - y1) / h, (c - x1) / w, (d - y1) / h)
                    for a, b, c, d in marks.boxes),
        points=tuple(((x - x1) / w, (y - y1) / h) for x, y in marks.points))


def draw_marks(small: np.ndarray, marks: Marks) -> np.ndarray:
    """A copy of ``small`` with the boxes outlined and the click points crossed."""
    out = small.copy()
    h, w = out.shape[:2]
    for x1, y1, x2, y2 in marks.boxes:
        p1 = (round(x1 * (w - 1)), round(y1 * (h - 1)))
        p2 = (round(x2 * (w - 1)), round(y2 * (h - 1)))
        cv2.rectangle(out, p1, p2, BOX_COLOUR, 1)
    for x, y in marks.points:
        cx, cy = round(x * (w - 1)), round(y * (h - 1))
        arm = max(1, min(w, h) // 25)
        cv2.line(out, (cx - arm, cy), (cx + arm, cy), CLICK_COLOUR, 1)
        cv2.line(out, (cx, cy - arm), (cx, cy + arm), CLICK_COLOUR, 1)
    return out


def half_block_rows(rgb: np.ndarray) -> list[list[Segment]]:
    """One row of segments per two pixel rows (the height must be even)."""
    styles: dict[tuple[int, ...], Style] = {}
    rows: list[list[Segment]] = []
    for y in range(0, rgb.shape[0] - 1, 2):
        top, bottom = rgb[y], rgb[y + 1]
        row: list[Segment] = []
        for t, b in zip(top.tolist(), bottom.tolist(), strict=True):
            key = (*t, *b)
            style = styles.get(key)
            if style is None:
                style = styles[key] = Style(color=Color.from_rgb(*t),
                                            bgcolor=Color.from_rgb(*b))
            row.append(Segment(_UPPER_HALF, style))
        rows.append(list(Segment.simplify(row)))
    return rows


class ScreenView(Widget):
    """Shows one RGB picture scaled to the widget, centred, with :class:`Marks` over it;
    zoomed on the marks when the whole picture would be too coarse to read."""

    DEFAULT_CSS = """
    ScreenView { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rgb: np.ndarray | None = None
        self._marks = Marks()
        self._rows: list[list[Segment]] = []
        self._rendered_for: tuple[int, int] | None = None
        self._left = 0
        self._top = 0
        self._caption = ""
        self._zoom = True
        self.zoomed: Fractions | None = None  # the region shown, when zoomed

    def show(self, rgb: np.ndarray, marks: Marks | None = None) -> None:
        """Show a new picture (marks cleared unless given)."""
        self._rgb = rgb
        self._marks = marks or Marks()
        self._rendered_for = None
        self.refresh()

    def mark(self, marks: Marks) -> None:
        """Draw ``marks`` over the current picture."""
        self._marks = marks
        self._rendered_for = None
        self.refresh()

    @property
    def marks(self) -> Marks:
        """What is drawn over the picture now."""
        return self._marks

    @property
    def zoom(self) -> bool:
        """Whether the view may zoom on the marks (it does only when it needs to)."""
        return self._zoom

    @zoom.setter
    def zoom(self, on: bool) -> None:
        self._zoom = on
        self._rendered_for = None
        self.refresh()

    def _render_rows(self, size: Size) -> None:
        self._rendered_for = (size.width, size.height)
        self._rows, self._caption, self.zoomed = [], "", None
        if self._rgb is None:
            return
        rgb, marks = self._rgb, self._marks
        image_h, image_w = rgb.shape[:2]
        cells_h = size.height
        region = (zoom_region(image_w, image_h, size.width, cells_h - 1, marks)
                  if self._zoom else None)
        if region is not None:
            x1, y1, x2, y2 = region
            rgb = rgb[round(y1 * image_h):round(y2 * image_h),
                      round(x1 * image_w):round(x2 * image_w)]
            marks = within(marks, region)
            cells_h -= 1  # the caption's row
            whole = fit(image_w, image_h, size.width, cells_h)[0] / image_w
            factor = fit(rgb.shape[1], rgb.shape[0], size.width, cells_h)[0] / rgb.shape[1]
            zoom = f"zoom {factor / max(whole, 1e-9):.0f}x"
            self._caption = next(
                (c for c in (f"{zoom} on the target · screen {image_w}x{image_h} · z: whole "
                             "screen", f"{zoom} on the target · z: whole screen",
                             f"{zoom} · z: whole screen") if len(c) <= size.width),
                zoom)
            self.zoomed = region
        width, height = fit(rgb.shape[1], rgb.shape[0], size.width, cells_h)
        if width == 0:
            return
        small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        self._rows = half_block_rows(draw_marks(small, marks))
        self._left = (size.width - width) // 2
        self._top = (cells_h - height // 2) // 2 + (1 if self._caption else 0)

    def render_line(self, y: int) -> Strip:
        """One terminal row of the picture (blank outside it)."""
        size = self.size
        if self._rendered_for != (size.width, size.height):
            self._render_rows(size)
        row = y - self._top
        if self._rgb is None and y == size.height // 2:
            text = "waiting for the first screenshot…"
            pad = max(0, (size.width - len(text)) // 2)
            return Strip([Segment(" " * pad + text)]).extend_cell_length(size.width)
        if y == 0 and self._caption:
            caption = self._caption[:size.width]
            return Strip([Segment(caption, _CAPTION)]).extend_cell_length(size.width)
        if not 0 <= row < len(self._rows):
            return Strip.blank(size.width)
        strip = Strip([Segment(" " * self._left), *self._rows[row]])
        return strip.extend_cell_length(size.width)


_CAPTION = Style(color="black", bgcolor=Color.from_rgb(*BOX_COLOUR), bold=True)
