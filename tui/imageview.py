"""The latest screenshot drawn in the terminal, with the predicted box and click marked.

Each character cell shows two pixels stacked: the upper half block takes the top pixel as its
colour and the bottom pixel as its background. Cells are about twice as tall as wide, so the
picture keeps its aspect ratio without any correction.
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
    """Shows one RGB picture scaled to the widget, centred, with :class:`Marks` over it."""

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

    def _render_rows(self, size: Size) -> None:
        self._rendered_for = (size.width, size.height)
        self._rows = []
        if self._rgb is None:
            return
        image_h, image_w = self._rgb.shape[:2]
        width, height = fit(image_w, image_h, size.width, size.height)
        if width == 0:
            return
        small = cv2.resize(self._rgb, (width, height), interpolation=cv2.INTER_AREA)
        self._rows = half_block_rows(draw_marks(small, self._marks))
        self._left = (size.width - width) // 2
        self._top = (size.height - height // 2) // 2

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
        if not 0 <= row < len(self._rows):
            return Strip.blank(size.width)
        strip = Strip([Segment(" " * self._left), *self._rows[row]])
        return strip.extend_cell_length(size.width)
