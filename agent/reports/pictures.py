"""The pictures of the HTML report: screenshots read once, then cut, scaled and marked.

A full 1080p screenshot shrunk to a page column makes a button a speck, so each step is shown
as a zoomed crop around its target (the box, the click point and the other places considered,
drawn with Pillow at the crop's own scale so lines stay crisp) beside a small thumbnail of the
whole screen with the crop's area outlined. Everything becomes a JPEG data URI: the report is
one file that opens offline.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from PIL import Image, ImageDraw

from deskpilot.grounding.geometry import PixelBox

log = logging.getLogger(__name__)

MAX_WIDTH = 1600          # the full-size view: wider screenshots are downscaled
THUMB_WIDTH = 320         # the whole screen beside each crop, and the filmstrip
ZOOM_SIZE = (560, 350)    # the largest a crop is drawn (upscaled up to ZOOM_MAX_SCALE)
ZOOM_MAX_SCALE = 3.0
ZOOM_MIN = (320, 200)     # a crop covers at least this many screen pixels...
ZOOM_CONTEXT = 3          # ...and this many times the target's own size
ZOOM_MARGIN = 40          # around a group of candidates when there is no target
JPEG_QUALITY = 82
MAX_PIXELS = 8192 * 8192  # larger files are not screenshots of ours: not decoded

BOX = (255, 140, 0)        # the target's box (also the crop's area on the thumbnail)
POINT = (229, 0, 79)       # where the pointer acted
CANDIDATE = (9, 105, 218)  # other places considered: closest or competing OCR texts
HALO = (255, 255, 255)


def uri(image: Image.Image) -> str:
    """``image`` as a JPEG data URI."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def load(path: Path | None) -> Picture | None:
    """The screenshot at ``path``, or None (logged) when it is missing or not an image."""
    if path is None:
        return None
    try:
        if not path.is_file():  # a FIFO or a device would block or never end
            raise OSError("not a regular file")
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise OSError(f"{image.width}x{image.height} is too large")
            return Picture(image.convert("RGB"))
    except OSError as exc:  # missing, unreadable or not an image: the report still renders
        log.warning("report: screenshot %s not embedded: %s", path, exc)
        return None


class Picture:
    """One screenshot and the views of it the report embeds, each made on first use."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image

    @property
    def size(self) -> tuple[int, int]:
        """The original pixel size: boxes, points and the SVG overlay are in these pixels."""
        return self.image.size

    @cached_property
    def full(self) -> str:
        """The whole screenshot, at most :data:`MAX_WIDTH` wide."""
        return uri(_scaled(self.image, min(1.0, MAX_WIDTH / self.image.width)))

    def thumbnail(self, area: PixelBox | None = None) -> str:
        """The whole screen :data:`THUMB_WIDTH` wide, ``area`` outlined."""
        scale = min(1.0, THUMB_WIDTH / self.image.width)
        small = _scaled(self.image, scale)
        if area is not None:
            pen = ImageDraw.Draw(small)
            _rect(pen, _scale_box(area, scale), BOX, 2)
        return uri(small)

    def zoom(self, area: PixelBox, *, box: PixelBox | None = None,
             points: Sequence[tuple[int, int]] = (),
             others: Sequence[PixelBox] = ()) -> tuple[str, tuple[int, int]]:
        """``area`` cut out and scaled to fit :data:`ZOOM_SIZE`, with the marks drawn; the
        data URI and the drawn size."""
        return zoomed(self.image, area, box=box, points=points, others=others)


def zoomed(image: Image.Image, area: PixelBox, *, box: PixelBox | None = None,
           points: Sequence[tuple[int, int]] = (),
           others: Sequence[PixelBox] = ()) -> tuple[str, tuple[int, int]]:
    """See :meth:`Picture.zoom` (also used for baselines and difference images)."""
    x1, y1, x2, y2 = _clamp(area, image.size)
    crop = image.crop((x1, y1, x2, y2))
    scale = min(ZOOM_MAX_SCALE, ZOOM_SIZE[0] / crop.width, ZOOM_SIZE[1] / crop.height)
    crop = _scaled(crop, scale)
    pen = ImageDraw.Draw(crop)

    def local(b: PixelBox) -> PixelBox:
        return _scale_box((b[0] - x1, b[1] - y1, b[2] - x1, b[3] - y1), scale)

    for other in others:
        _rect(pen, local(other), CANDIDATE, 2)
    if box is not None:
        _rect(pen, local(box), BOX, 3)
    for x, y in points:
        px, py = (x - x1 + 0.5) * scale, (y - y1 + 0.5) * scale
        _crosshair(pen, round(px), round(py))
    return uri(crop), crop.size


def focus(size: tuple[int, int], *, box: PixelBox | None = None,
          points: Sequence[tuple[int, int]] = (),
          others: Sequence[PixelBox] = ()) -> PixelBox | None:
    """The part of a ``size`` screenshot worth zooming into, or None when nothing is marked.

    Around the target (box and points) it spans :data:`ZOOM_CONTEXT` times the target's size;
    without a target, it spans the other places considered with a margin of
    :data:`ZOOM_MARGIN` when they lie close together, else the first (best) of them. It is at
    least :data:`ZOOM_MIN`, widened to the shape of :data:`ZOOM_SIZE` (so crops line up), and
    kept inside the image.
    """
    parts = [box] if box is not None else []
    parts += [(x, y, x + 1, y + 1) for x, y in points]
    if parts:
        x1, y1, x2, y2 = _union(parts)
        width, height = ZOOM_CONTEXT * (x2 - x1), ZOOM_CONTEXT * (y2 - y1)
    elif others:
        together = _union(others)
        near = (together[2] - together[0] <= size[0] // 2
                and together[3] - together[1] <= size[1] // 2)
        x1, y1, x2, y2 = together if near else _union(others[:1])
        width, height = x2 - x1 + 2 * ZOOM_MARGIN, y2 - y1 + 2 * ZOOM_MARGIN
        if not near:
            width, height = max(width, ZOOM_CONTEXT * (x2 - x1)), height * ZOOM_CONTEXT
    else:
        return None
    width, height = max(ZOOM_MIN[0], width), max(ZOOM_MIN[1], height)
    aspect = ZOOM_SIZE[0] / ZOOM_SIZE[1]
    width, height = max(width, round(height * aspect)), max(height, round(width / aspect))
    width, height = min(size[0], width), min(size[1], height)
    left = min(max(0, (x1 + x2 - width) // 2), size[0] - width)
    top = min(max(0, (y1 + y2 - height) // 2), size[1] - height)
    return (left, top, left + width, top + height)


def _union(boxes: Sequence[PixelBox]) -> PixelBox:
    return (min(min(b[0], b[2]) for b in boxes), min(min(b[1], b[3]) for b in boxes),
            max(max(b[0], b[2]) for b in boxes), max(max(b[1], b[3]) for b in boxes))


def _clamp(area: PixelBox, size: tuple[int, int]) -> PixelBox:
    x1, y1 = min(max(0, area[0]), size[0] - 1), min(max(0, area[1]), size[1] - 1)
    return (x1, y1, max(x1 + 1, min(area[2], size[0])), max(y1 + 1, min(area[3], size[1])))


def _scaled(image: Image.Image, scale: float) -> Image.Image:
    if abs(scale - 1.0) < 1e-3:
        return image.copy()
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _scale_box(box: PixelBox, scale: float) -> PixelBox:
    return (round(min(box[0], box[2]) * scale), round(min(box[1], box[3]) * scale),
            round(max(box[0], box[2]) * scale), round(max(box[1], box[3]) * scale))


def _rect(pen: ImageDraw.ImageDraw, box: PixelBox, colour: tuple[int, int, int],
          width: int) -> None:
    """An outline with a white halo, visible on dark and light screens alike."""
    x1, y1, x2, y2 = box
    pen.rectangle((x1 - width, y1 - width, x2 + width, y2 + width), outline=HALO, width=1)
    pen.rectangle((x1 - width + 1, y1 - width + 1, x2 + width - 1, y2 + width - 1),
                  outline=colour, width=width)


def _crosshair(pen: ImageDraw.ImageDraw, x: int, y: int, r: int = 9) -> None:
    """A ring with four arms around (x, y), haloed, and a dot on the point itself."""
    for colour, width in ((HALO, 5), (POINT, 3)):
        pen.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=width)
        for x1, y1, x2, y2 in ((x - 2 * r, y, x - r, y), (x + r, y, x + 2 * r, y),
                               (x, y - 2 * r, x, y - r), (x, y + r, x, y + 2 * r)):
            pen.line((x1, y1, x2, y2), fill=colour, width=width)
    pen.ellipse((x - 2, y - 2, x + 2, y + 2), fill=POINT)
