"""Text on the screen, read offline: a reader Protocol, rapidocr behind it, and a fake for tests."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from deskpilot.grounding.geometry import PixelBox

if TYPE_CHECKING:
    from rapidocr import RapidOCR

log = logging.getLogger(__name__)


# The models that ship inside the rapidocr wheel (PP-OCRv6 small detection and recognition,
# and the orientation classifier, which is not used): naming them keeps rapidocr from ever
# reaching for the net, where it fetches models it cannot find.
DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"

CONTEXT_MARGIN = 16   # pixels read around a region, so text at its edge is seen whole
MIN_CROP_SIDE = 128   # the detector misses small glyphs in smaller crops


class OcrError(RuntimeError):
    """The OCR engine could not be built or failed while reading."""


@dataclass(frozen=True, slots=True)
class TextBox:
    """One piece of text (a word) and where it is."""

    text: str
    box: PixelBox
    score: float


@dataclass(frozen=True, slots=True)
class TextLine:
    """One detected line of text, with its words when the engine could place them."""

    text: str
    box: PixelBox
    score: float
    words: tuple[TextBox, ...] = ()


@runtime_checkable
class TextReader(Protocol):
    """Something that reads the text in an RGB image."""

    @property
    def name(self) -> str:
        """A short name of the engine, for logs and reports."""
        ...

    def read(self, rgb: np.ndarray, region: PixelBox | None = None) -> list[TextLine]:
        """Read the lines in ``rgb`` (or those centred in ``region``); boxes in image pixels."""
        ...


def box_centre_inside(box: PixelBox, region: PixelBox) -> bool:
    """Whether the centre of ``box`` lies inside ``region``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] <= cx < region[2] and region[1] <= cy < region[3]


def clip_region(region: PixelBox, width: int, height: int) -> PixelBox:
    """``region`` clipped to a ``width`` x ``height`` image; ValueError when nothing is left."""
    x1, y1, x2, y2 = (int(v) for v in region)
    clipped = (max(x1, 0), max(y1, 0), min(x2, width), min(y2, height))
    if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
        raise ValueError(f"region {region} is empty inside the {width}x{height} image")
    return clipped


def context_crop(region: PixelBox, width: int, height: int) -> PixelBox:
    """The part of the image read for ``region``: it with some context, sized in 32s.

    Cut out tight, a lone "+" on a button is not detected at all; with a margin and at least
    128 pixels a side, 54 of 55 xcalc labels read as in a full-screen read (against 43 of 55
    cut tight). Sides in multiples of 32 (where the image allows) are what the detector takes,
    so it does not resample the crop.
    """
    x1, y1, x2, y2 = region
    xs = _grow(x1, x2, max(x2 - x1 + 2 * CONTEXT_MARGIN, MIN_CROP_SIDE), width)
    ys = _grow(y1, y2, max(y2 - y1 + 2 * CONTEXT_MARGIN, MIN_CROP_SIDE), height)
    return (xs[0], ys[0], xs[1], ys[1])


def _grow(start: int, stop: int, size: int, limit: int) -> tuple[int, int]:
    """[start, stop) widened to ``size`` rounded up to 32, kept centred and inside [0, limit)."""
    size = min(-(-size // 32) * 32, limit)
    begin = round((start + stop - size) / 2)
    begin = max(0, min(begin, limit - size))
    return begin, begin + size


def quad_to_box(points: Iterable[Sequence[float]], width: int, height: int) -> PixelBox:
    """The axis-aligned box around a quad of float points, rounded outward, within the image."""
    xs, ys = zip(*((float(p[0]), float(p[1])) for p in points), strict=True)
    return (max(math.floor(min(xs)), 0), max(math.floor(min(ys)), 0),
            min(math.ceil(max(xs)), width), min(math.ceil(max(ys)), height))


def _check_image(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3:
        raise ValueError("OCR needs an H x W x 3 uint8 RGB numpy array, got "
                         f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb))}")


class RapidOcrReader:
    """Offline OCR with rapidocr (PP-OCRv6 small on onnxruntime), built at the first read.

    ``model_dir`` holds the ONNX files; by default the ones shipped in the rapidocr wheel.
    Lines recognized with a confidence below ``min_score`` are dropped. A region is read with
    a little context around it (:func:`context_crop`) and only lines centred in it are kept.
    Nothing is downloaded and nothing is printed: rapidocr's log records go through Python
    logging (logger ``"RapidOCR"``) at ERROR and above.
    """

    def __init__(self, *, model_dir: Path | None = None, min_score: float = 0.5) -> None:
        self._model_dir = model_dir
        self._min_score = min_score
        self._engine: RapidOCR | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The engine and its models."""
        return "rapidocr PP-OCRv6 small"

    def read(self, rgb: np.ndarray, region: PixelBox | None = None) -> list[TextLine]:
        """Read the lines of ``rgb``, or those centred in ``region``; boxes in image pixels."""
        _check_image(rgb)
        height, width = rgb.shape[:2]
        want = None if region is None else clip_region(region, width, height)
        x0, y0, x1, y1 = (0, 0, width, height) if want is None \
            else context_crop(want, width, height)
        # rapidocr treats a 3-channel ndarray as OpenCV BGR (LoadImage.convert_img converts
        # only files and PIL images), so the channels are swapped here; the copy also makes a
        # read-only or cropped (non-contiguous) view into a fresh contiguous array.
        bgr = np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1])
        engine = self._engine_once()
        try:
            result = engine(bgr, return_word_box=True)
        except Exception as exc:  # whatever onnxruntime or rapidocr raise: one error type out
            raise OcrError(f"rapidocr failed to read a {x1 - x0}x{y1 - y0} image: {exc}") from exc
        lines = _lines(result, (x0, y0), width, height)
        if want is not None:
            lines = [line for line in lines if box_centre_inside(line.box, want)]
        log.debug("read %d lines in a %dx%d image", len(lines), x1 - x0, y1 - y0)
        return lines

    def _engine_once(self) -> RapidOCR:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._build()
        return self._engine

    def _build(self) -> RapidOCR:
        try:
            import rapidocr
        except ImportError as exc:
            raise OcrError(f"rapidocr is not installed ({exc}); pip install rapidocr "
                           "onnxruntime") from exc
        engine_class = rapidocr.RapidOCR  # rapidocr imports its modules, and its logger, lazily
        _route_rapidocr_logs()
        model_dir = self._model_dir or Path(rapidocr.__file__).parent / "models"
        paths = [model_dir / name for name in (DET_MODEL, REC_MODEL, CLS_MODEL)]
        if missing := [str(p) for p in paths[:2] if not p.is_file()]:
            raise OcrError(f"OCR model file(s) missing: {', '.join(missing)} (they ship in the "
                           "rapidocr wheel: reinstall it; nothing is downloaded)")
        params = {
            "Global.log_level": "error",
            "Global.text_score": self._min_score,
            # Screen text is never upside down: the orientation classifier only costs time
            # (and with it, xcalc's "cos" read as "soo" and "9" went missing).
            "Global.use_cls": False,
            # Detect at the image's own scale (screens are sharp), not with the shorter side
            # blown up to 736 pixels: a 320x430 crop was read at 736x990, slower than needed,
            # and a region read now boxes text as a full-screen read does.
            "Det.limit_type": "max",
            "Det.limit_side_len": 2000,
            # xcalc's lone "+" and "-" score just under the default 0.5 as boxes; at 0.4 a
            # full-screen read finds the same 62 lines as at 0.5.
            "Det.box_thresh": 0.4,
            "Det.model_path": str(paths[0]),
            "Rec.model_path": str(paths[1]),
            "Cls.model_path": str(paths[2]),
        }
        try:
            engine = engine_class(params=params)
        except Exception as exc:  # rapidocr raises assorted types for bad configs and models
            raise OcrError(f"cannot build the rapidocr engine from {model_dir}: {exc}") from exc
        log.info("rapidocr engine built from %s", model_dir)
        return engine


def _route_rapidocr_logs() -> None:
    """Send rapidocr's records through Python logging instead of its own stderr handler."""
    # rapidocr installs a colorlog StreamHandler on its logger and stops propagation, so its
    # lines ("Using ...onnx") would reach stderr and draw over a terminal UI. Its warnings
    # only say that a read found no text, which read() reports as an empty list: ERROR and up.
    rlog = logging.getLogger("RapidOCR")
    for handler in list(rlog.handlers):
        rlog.removeHandler(handler)
    rlog.propagate = True
    rlog.setLevel(logging.ERROR)


def _lines(result: Any, offset: tuple[int, int], width: int, height: int) -> list[TextLine]:
    """TextLines from a RapidOCROutput (empty when nothing was found), shifted by ``offset``."""
    boxes, txts = getattr(result, "boxes", None), getattr(result, "txts", None)
    if boxes is None or txts is None or len(txts) == 0:
        return []
    scores = getattr(result, "scores", None) or (1.0,) * len(txts)
    words = _align_words(txts, getattr(result, "word_results", None) or ())
    dx, dy = offset
    out = []
    for quad, text, score, line_words in zip(boxes, txts, scores, words, strict=True):
        out.append(TextLine(
            str(text), _shift(quad, dx, dy, width, height), float(score),
            tuple(TextBox(str(t), _shift(q, dx, dy, width, height), float(s))
                  for t, s, q in line_words)))
    return out


def _shift(quad: Any, dx: int, dy: int, width: int, height: int) -> PixelBox:
    return quad_to_box(((float(p[0]) + dx, float(p[1]) + dy) for p in quad), width, height)


def _align_words(txts: Sequence[str], word_results: Sequence[Any]) -> list[list[Any]]:
    """Each line's (text, score, quad) words, or none where they cannot be trusted.

    rapidocr drops lines without word boxes from ``word_results`` (and returns raw decoder
    objects when any line lacks them), so the two sequences can be out of step: words are
    accepted for a line only when they spell its text.
    """
    aligned: list[list[Any]] = []
    j = 0
    for text in txts:
        words: list[Any] = []
        if j < len(word_results) and _words_spell(word_results[j], text):
            words = [w for w in word_results[j] if w[2] is not None]
            j += 1
        aligned.append(words)
    return aligned


def _words_spell(entry: Any, text: str) -> bool:
    if not isinstance(entry, tuple | list) or not entry:
        return False
    if not all(isinstance(w, tuple | list) and len(w) == 3 for w in entry):
        return False
    return "".join(str(w[0]) for w in entry).replace(" ", "") == text.replace(" ", "")


class FakeReader:
    """A scripted reader for tests: returns the given lines whose centre is in the region."""

    def __init__(self, lines: Sequence[TextLine], *, name: str = "fake") -> None:
        self.lines = list(lines)
        self.calls: list[PixelBox | None] = []
        self._name = name

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    def read(self, rgb: np.ndarray, region: PixelBox | None = None) -> list[TextLine]:
        """The scripted lines (those centred in ``region`` when one is given); records the call."""
        _check_image(rgb)
        height, width = rgb.shape[:2]
        clipped = None if region is None else clip_region(region, width, height)
        self.calls.append(clipped)
        if clipped is None:
            return list(self.lines)
        return [line for line in self.lines if box_centre_inside(line.box, clipped)]


__all__ = ["FakeReader", "OcrError", "PixelBox", "RapidOcrReader", "TextBox", "TextLine",
           "TextReader", "box_centre_inside", "clip_region", "context_crop", "quad_to_box"]
