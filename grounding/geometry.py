"""Coordinate spaces, kept explicit and pure.

Three spaces matter:

* **normalized** — what the model answers: fractions in [0, 1] of the image it was shown;
* **image pixels** — the monitor's screenshot as captured (physical pixels, top-left origin);
* **screen points** — what the input API (pyautogui) takes: logical points in the virtual
  desktop, where a monitor left of the primary has a negative origin and a HiDPI monitor has
  fewer points than pixels.

A :class:`View` records which part of the screenshot the model saw, so a normalized answer about a
crop maps back exactly. The model's own internal resize does not matter: its answer is normalized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A rectangle in screenshot pixels: x1, y1, x2, y2 with x2 and y2 exclusive (OCR boxes,
# cached targets, regions of task files).
PixelBox = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Point:
    """A position in screen points (the input API's coordinates)."""

    x: int
    y: int


@dataclass(frozen=True, slots=True)
class ScreenGeometry:
    """One monitor: its rectangle in screen points and how many pixels make one point."""

    left: int
    top: int
    width: int
    height: int
    scale: float = 1.0
    index: int = 1

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"monitor size must be positive, got {self.width}x{self.height}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"monitor scale must be a positive number, got {self.scale}")

    def pixel_box(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A box in screen points (x1, y1, x2, y2) as the pixels of this monitor's screenshot."""
        return (round((box[0] - self.left) * self.scale), round((box[1] - self.top) * self.scale),
                round((box[2] - self.left) * self.scale), round((box[3] - self.top) * self.scale))

    @property
    def pixel_width(self) -> int:
        """Width of a full screenshot of this monitor, in physical pixels."""
        return round(self.width * self.scale)

    @property
    def pixel_height(self) -> int:
        """Height of a full screenshot of this monitor, in physical pixels."""
        return round(self.height * self.scale)

    @property
    def right(self) -> int:
        """First x (in points) past the monitor's right edge."""
        return self.left + self.width

    @property
    def bottom(self) -> int:
        """First y (in points) past the monitor's bottom edge."""
        return self.top + self.height

    def contains(self, point: Point) -> bool:
        """True when the point lies on this monitor."""
        return self.left <= point.x < self.right and self.top <= point.y < self.bottom

    def corner_distance(self, point: Point) -> int:
        """Chebyshev distance in points from the point to the nearest corner of this monitor."""
        xs = (point.x - self.left, self.right - 1 - point.x)
        ys = (point.y - self.top, self.bottom - 1 - point.y)
        return min(max(abs(dx), abs(dy)) for dx in xs for dy in ys)


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle in image pixels of a monitor's screenshot."""

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"region size must be positive, got {self.width}x{self.height}")
        if self.x < 0 or self.y < 0:
            raise ValueError(f"region origin must not be negative, got ({self.x}, {self.y})")


@dataclass(frozen=True, slots=True)
class View:
    """What the model was shown: ``region`` of ``screen``'s screenshot, resized to image size."""

    screen: ScreenGeometry
    region: Region
    image_width: int
    image_height: int

    @classmethod
    def full(cls, screen: ScreenGeometry, image_width: int, image_height: int) -> View:
        """A view of the whole monitor."""
        return cls(screen, Region(0, 0, screen.pixel_width, screen.pixel_height),
                   image_width, image_height)

    def __post_init__(self) -> None:
        r, s = self.region, self.screen
        if r.x + r.width > s.pixel_width or r.y + r.height > s.pixel_height:
            raise ValueError(
                f"region {r} does not fit in a {s.pixel_width}x{s.pixel_height} screenshot")
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError("image size must be positive")


def norm_to_screen(nx: float, ny: float, view: View) -> Point:
    """Map a normalized point in the view's image to screen points.

    Values are clamped to the region, so 1.0 lands on its last pixel rather than one past it.
    """
    r, s = view.region, view.screen
    px = min(r.x + nx * r.width, r.x + r.width - 1)
    py = min(r.y + ny * r.height, r.y + r.height - 1)
    px, py = max(px, r.x), max(py, r.y)
    return Point(s.left + math.floor(px / s.scale), s.top + math.floor(py / s.scale))


def box_center(box: tuple[float, float, float, float]) -> tuple[float, float]:
    """Centre of a normalized ``(x1, y1, x2, y2)`` box."""
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2


def box_to_screen(box: tuple[float, float, float, float], view: View) -> Point:
    """Map the centre of a normalized box in the view's image to screen points."""
    return norm_to_screen(*box_center(box), view)


def screen_to_norm(point: Point, view: View) -> tuple[float, float]:
    """Inverse of :func:`norm_to_screen`: the normalized position of a point's pixel centre."""
    r, s = view.region, view.screen
    px = (point.x - s.left + 0.5) * s.scale
    py = (point.y - s.top + 0.5) * s.scale
    return (px - r.x) / r.width, (py - r.y) / r.height


def crop_view(view: View, box: tuple[float, float, float, float], *,
              image_width: int, image_height: int) -> View:
    """A view of the part of ``view`` covered by a normalized box (for zooming in).

    The box is put in order and clipped to the view, so a box that touches or slightly
    overshoots an edge still gives a region of at least one pixel inside the view.
    """
    r = view.region
    x1, x2 = sorted(min(max(v, 0.0), 1.0) for v in (box[0], box[2]))
    y1, y2 = sorted(min(max(v, 0.0), 1.0) for v in (box[1], box[3]))
    left = r.x + min(math.floor(x1 * r.width), r.width - 1)
    top = r.y + min(math.floor(y1 * r.height), r.height - 1)
    right = r.x + math.ceil(x2 * r.width)
    bottom = r.y + math.ceil(y2 * r.height)
    return View(view.screen, Region(left, top, max(1, right - left), max(1, bottom - top)),
                image_width, image_height)
