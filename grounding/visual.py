"""Visual regression: compare a screenshot with a stored baseline, and keep baselines as PNGs."""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from deskpilot.grounding.files import read_regular_file, reason
from deskpilot.grounding.template import PixelBox

_CHANGED = np.array([255, 0, 0], dtype=np.uint8)        # changed pixels in the diff picture
_BOX_OUTLINE = np.array([255, 255, 0], dtype=np.uint8)  # the changed box: yellow stands out
_REGION_OUTLINE = np.array([0, 160, 255], dtype=np.uint8)


@dataclass(frozen=True, slots=True, eq=False)
class Comparison:
    """The outcome of comparing a screenshot with its baseline.

    ``changed_box`` is in screenshot pixels (x2, y2 exclusive), also when a region was given.
    ``diff`` is the current screen dimmed to gray with changed pixels in red and the changed
    box outlined; it is None when the sizes differ and nothing could be compared.
    """

    passed: bool
    changed_pixels: int
    changed_fraction: float
    max_delta: int
    changed_box: PixelBox | None
    diff: np.ndarray | None
    message: str


def compare(baseline: np.ndarray, current: np.ndarray, *, region: PixelBox | None = None,
            pixel_threshold: int = 32, tolerance: float = 0.001) -> Comparison:
    """Compare ``current`` with ``baseline``, within ``region`` if given.

    A pixel has changed when one of its channels differs by more than ``pixel_threshold``; the
    comparison passes when the changed fraction (of the region, or of the whole screenshot) is
    at most ``tolerance``. A size mismatch fails and counts every compared pixel as changed.
    """
    _check_rgb(baseline, "baseline")
    _check_rgb(current, "current screenshot")
    if not 0 <= pixel_threshold <= 255:
        raise ValueError(f"pixel_threshold must be in 0..255, got {pixel_threshold}")
    if not 0.0 <= tolerance <= 1.0:
        raise ValueError(f"tolerance must be in [0, 1], got {tolerance}")
    height, width = current.shape[:2]
    if baseline.shape != current.shape:
        bh, bw = baseline.shape[:2]
        return Comparison(False, width * height, 1.0, 255, None, None,
                          f"screen size changed: baseline {bw}x{bh}, current {width}x{height}")

    x1, y1, x2, y2 = (0, 0, width, height) if region is None else _clip(region, width, height)
    delta = cv2.absdiff(baseline[y1:y2, x1:x2], current[y1:y2, x1:x2]).max(axis=2)
    changed = delta > pixel_threshold
    count = int(np.count_nonzero(changed))
    total = (x2 - x1) * (y2 - y1)
    fraction = count / total
    box = _bounding_box(changed, x1, y1)
    passed = fraction <= tolerance

    where = f"{width}x{height}" if region is None else \
        f"the {x2 - x1}x{y2 - y1} region at ({x1},{y1})"
    message = f"{count:,} pixels changed ({fraction:.2%} of {where}, tolerance {tolerance:.2%})"
    if box is not None:
        message += f" in ({box[0]},{box[1]})-({box[2]},{box[3]})"
    return Comparison(passed, count, fraction, int(delta.max()), box,
                      _diff_picture(current, changed, (x1, y1, x2, y2), box,
                                    show_region=region is not None),
                      message)


MAX_IMAGE_BYTES = 256 * 1024 * 1024  # a lossless 8K screenshot is far below this
MAX_IMAGE_PIXELS = 16384 * 8192  # wider than any screen set up today, bounded in memory


class ImageError(ValueError):
    """A stored image cannot be used: not a regular file, not an image, or too large."""


def load_png(path: Path) -> np.ndarray:
    """Read a stored image (a baseline, a cache crop) as an H x W x 3 uint8 RGB array.

    Only a regular file of at most :data:`MAX_IMAGE_BYTES` is read (never a FIFO or a device),
    and its pixel count is checked from the header before anything is decoded. Every problem
    is an :class:`ImageError` with a one-line reason; a missing file stays FileNotFoundError.
    """
    try:
        data = read_regular_file(path, MAX_IMAGE_BYTES)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ImageError(f"{path}: {reason(exc)}") from None
    if not data:
        raise ImageError(f"{path}: an empty file, not an image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageError(f"{path}: {width}x{height} pixels is larger than any screen "
                                 f"(at most {MAX_IMAGE_PIXELS:,} pixels)")
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from None


def save_png(path: Path, rgb: np.ndarray) -> None:
    """Write ``rgb`` as a PNG, atomically (a reader sees the old file or the new one, never half).

    The parent directory is created; the file is private to the user (0600), like run files.
    """
    _check_rgb(rgb, "image")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            # Without this a crash soon after the rename can leave an empty file on some
            # filesystems, which is exactly what the rename was meant to prevent.
            os.fsync(fh.fileno())
        tmp.replace(path)  # os.replace: atomic within one filesystem
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _clip(region: PixelBox, width: int, height: int) -> PixelBox:
    x1, y1 = max(int(region[0]), 0), max(int(region[1]), 0)
    x2, y2 = min(int(region[2]), width), min(int(region[3]), height)
    if x1 >= x2 or y1 >= y2:
        raise ValueError(f"region {region} has no pixels on the {width}x{height} screenshot")
    return x1, y1, x2, y2


def _bounding_box(mask: np.ndarray, dx: int, dy: int) -> PixelBox | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]) + dx, int(rows[0]) + dy, int(cols[-1]) + 1 + dx, int(rows[-1]) + 1 + dy)


def _diff_picture(current: np.ndarray, changed: np.ndarray, region: PixelBox,
                  box: PixelBox | None, *, show_region: bool) -> np.ndarray:
    gray = cv2.cvtColor(np.ascontiguousarray(current), cv2.COLOR_RGB2GRAY)
    # Dimmed and low-contrast, so the red pixels are what the eye finds first.
    dim = (gray.astype(np.uint16) * 2 // 5 + 60).astype(np.uint8)
    picture = np.repeat(dim[:, :, None], 3, axis=2)
    x1, y1, x2, y2 = region
    picture[y1:y2, x1:x2][changed] = _CHANGED
    if show_region:
        _outline(picture, region, _REGION_OUTLINE, width=1)
    if box is not None:
        _outline(picture, box, _BOX_OUTLINE, width=2)
    return picture


def _outline(picture: np.ndarray, box: PixelBox, colour: np.ndarray, *, width: int) -> None:
    """Draw a rectangle just outside ``box`` (inside where the image edge is in the way)."""
    height, full_width = picture.shape[:2]
    x1, y1 = max(box[0] - width, 0), max(box[1] - width, 0)
    x2, y2 = min(box[2] + width, full_width), min(box[3] + width, height)
    picture[y1:min(y1 + width, y2), x1:x2] = colour
    picture[max(y2 - width, y1):y2, x1:x2] = colour
    picture[y1:y2, x1:min(x1 + width, x2)] = colour
    picture[y1:y2, max(x2 - width, x1):x2] = colour


def _check_rgb(rgb: object, what: str) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{what} must be an H x W x 3 uint8 numpy array, got "
                         f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb))}")
