"""Text on the screen, read offline: a reader Protocol, rapidocr behind it, and a fake for tests."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from deskpilot.grounding.geometry import PixelBox

if TYPE_CHECKING:
    from rapidocr import RapidOCR

log = logging.getLogger(__name__)
_T = TypeVar("_T")


# The models that ship inside the rapidocr wheel (PP-OCRv6 small detection and recognition,
# and the orientation classifier, which is not used): naming them keeps rapidocr from ever
# reaching for the net, where it fetches models it cannot find.
DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"

CONTEXT_MARGIN = 16   # pixels read around a region, so text at its edge is seen whole
MIN_CROP_SIDE = 128   # the detector misses small glyphs in smaller crops

# A full-screen read detects text band by band: full-width bands with BAND_CORE rows of their
# own and BAND_MARGIN rows of overlap above and below, so every line up to 2 * BAND_MARGIN
# pixels tall lies whole inside the band that owns its centre. Why bands: the detector's
# response to small text depends on the whole image it is given (on a 1920x1080 screen with a
# small dialog, zenity's "No" scored 0.25 against the 0.4 threshold and was dropped, while a
# band around the dialog scores it 0.99), and a band that did not change since the last read
# need not be read again.
BAND_CORE = 192
BAND_MARGIN = 32
# Within a band, text is detected segment by segment: runs of columns separated by gutters, at
# least GUTTER columns that are one colour from the band's top to its bottom (no text crosses
# one: a word space is a few pixels). Each segment is read with up to SEGMENT_CONTEXT gutter
# columns each side. A band is then detected only where something is drawn: on a 1920x1080
# screen with galculator alone, a full-width band took 275 ms to detect, the window's own
# columns 22 ms; and a change detects again only the segment it touched. Both reads, full and
# incremental, cut the same pixels the same way, so they give the same lines.
GUTTER = 64
SEGMENT_CONTEXT = 32
# rapidocr pads images wider than this many heights; a band is made tall enough to avoid it.
BAND_MAX_RATIO = 8
# A region read whose context covers more than this share of the image is answered from a
# full read (bands, segments, reuse); one crop that large costs seconds to detect and read at
# once (a 1920x1080 spreadsheet window: 9.5 s), and nothing of it is kept for the next read.
LARGE_REGION = 0.25
REC_CACHE_SIZE = 4096  # recognized line crops kept for reuse (a few screens' worth)
CROP_CACHE_SIZE = 256  # region reads kept for reuse, by the pixels of their context crop
MAX_SIDE = 8192  # detect at the image's own scale up to an 8K screen's width


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


@dataclass(frozen=True, slots=True)
class Band:
    """One band of a full read: the rows it owns and the rows it is read with."""

    core_top: int
    core_bottom: int
    read_top: int
    read_bottom: int


def bands(width: int, height: int) -> list[Band]:
    """The bands a ``width`` x ``height`` image is read in (their cores tile it exactly)."""
    read = max(BAND_CORE + 2 * BAND_MARGIN, -(-width // BAND_MAX_RATIO))
    read = -(-read // 32) * 32
    core = read - 2 * BAND_MARGIN
    out = []
    for top in range(0, height, core):
        bottom = min(top + core, height)
        out.append(Band(top, bottom, max(top - BAND_MARGIN, 0),
                        min(bottom + BAND_MARGIN, height)))
    return out


@dataclass(frozen=True, slots=True)
class Segment:
    """Columns of a band read together: ``x0:x1`` are read, ``own0:own1`` own the lines."""

    x0: int
    x1: int
    own0: int
    own1: int


def segments(pixels: np.ndarray) -> list[Segment]:
    """The segments of a band's pixels (H x W x 3): the runs of columns between gutters
    (:data:`GUTTER` or more one-colour columns), each with its context, widened to a multiple
    of 32 columns where the band allows (the detector's stride: no resampling). None when the
    band is one colour in every column (it holds no text)."""
    width = pixels.shape[1]
    drawn_columns = np.flatnonzero(~np.all(pixels == pixels[:1], axis=(0, 2)))
    if drawn_columns.size == 0:
        return []
    # A gap of GUTTER or more one-colour columns between two drawn ones splits the band.
    cuts = np.flatnonzero(np.diff(drawn_columns) > GUTTER)
    starts = [int(drawn_columns[0]), *(int(drawn_columns[c + 1]) for c in cuts)]
    stops = [*(int(drawn_columns[c]) + 1 for c in cuts), int(drawn_columns[-1]) + 1]
    drawn = list(zip(starts, stops, strict=True))
    out = []
    for i, (a, b) in enumerate(drawn):
        own0 = 0 if i == 0 else (drawn[i - 1][1] + a) // 2
        own1 = width if i == len(drawn) - 1 else (b + drawn[i + 1][0]) // 2
        x0, x1 = max(a - SEGMENT_CONTEXT, 0), min(b + SEGMENT_CONTEXT, width)
        size = min(-(-(x1 - x0) // 32) * 32, width)
        x0 = max(min(x0, width - size), 0)
        out.append(Segment(x0, x0 + size, own0, own1))
    return out


@dataclass(frozen=True, slots=True)
class _Read:
    """What one segment of a band held when it was last read."""

    segment: Segment
    digest: str
    lines: tuple[TextLine, ...]


@dataclass(frozen=True, slots=True)
class _Band:
    core_top: int
    core_bottom: int
    read_top: int
    read_bottom: int
    width: int
    digest: str
    reads: tuple[_Read, ...]

    @property
    def lines(self) -> tuple[TextLine, ...]:
        return tuple(line for read in self.reads for line in read.lines)


@dataclass
class ReadStats:
    """What the reader did and what it reused, counted since it was made."""

    bands_read: int = 0
    bands_reused: int = 0
    segments_read: int = 0
    segments_reused: int = 0
    crops_recognized: int = 0
    crops_reused: int = 0
    regions_reused: int = 0


@dataclass(slots=True)
class _Placed:
    """The two fields of a recognition result that rapidocr's word placer reads."""

    txts: tuple[str, ...]
    word_results: tuple[Any, ...]


def _remember(cache: dict[str, _T], key: str, value: _T, limit: int) -> None:
    """Keep ``value`` under ``key``, dropping the oldest entry once ``limit`` are kept."""
    if len(cache) >= limit:
        cache.pop(next(iter(cache)))
    cache[key] = value


def _digest(pixels: np.ndarray) -> str:
    digest = hashlib.blake2b(str(pixels.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


class RapidOcrReader:
    """Offline OCR with rapidocr (PP-OCRv6 small on onnxruntime), built at the first read.

    ``model_dir`` holds the ONNX files; by default the ones shipped in the rapidocr wheel.
    Lines recognized with a confidence below ``min_score`` are dropped. A region is read with
    a little context around it (:func:`context_crop`) and only lines centred in it are kept.

    A full read goes band by band (:func:`bands`). With ``incremental`` (the default) the
    reader keeps the last full read: bands whose pixels are unchanged keep their lines, line
    crops seen before keep their recognition, and a region read inside unchanged bands is
    answered from the last read. The result is the same as reading everything again.
    Nothing is downloaded and nothing is printed: rapidocr's log records go through Python
    logging (logger ``"RapidOCR"``) at ERROR and above.
    """

    def __init__(self, *, model_dir: Path | None = None, min_score: float = 0.5,
                 incremental: bool = True) -> None:
        self._model_dir = model_dir
        self._min_score = min_score
        self.incremental = incremental
        self.stats = ReadStats()
        self._engine: RapidOCR | None = None
        self._lock = threading.RLock()
        self._bands: dict[int, _Band] = {}
        self._recognized: dict[str, tuple[str, float, Any]] = {}
        self._crops: dict[str, tuple[TextLine, ...]] = {}

    @property
    def name(self) -> str:
        """The engine and its models."""
        return "rapidocr PP-OCRv6 small"

    def read(self, rgb: np.ndarray, region: PixelBox | None = None) -> list[TextLine]:
        """Read the lines of ``rgb``, or those centred in ``region``; boxes in image pixels."""
        _check_image(rgb)
        height, width = rgb.shape[:2]
        with self._lock:
            if region is None:
                lines = self._read_bands(rgb)
                log.debug("read %d lines in a %dx%d image (%s)", len(lines), width, height,
                          self.stats)
                return lines
            want = clip_region(region, width, height)
            area = context_crop(want, width, height)
            known = self._known_lines(rgb, area)
            if known is None and (area[2] - area[0]) * (area[3] - area[1]) \
                    > LARGE_REGION * width * height:
                # A large region (a whole window) is read as the screen is: band by band,
                # segment by segment, reusing what did not change.
                known = self._read_bands(rgb)
            elif known is not None:
                self.stats.regions_reused += 1
            if known is not None:
                return [line for line in known if box_centre_inside(line.box, want)]
            return self._read_crop(rgb, want)

    def forget(self) -> None:
        """Drop what earlier reads left behind (bands and recognized crops)."""
        with self._lock:
            self._bands.clear()
            self._recognized.clear()
            self._crops.clear()

    def _read_crop(self, rgb: np.ndarray, want: PixelBox) -> list[TextLine]:
        """The lines centred in ``want``, read in its context crop by rapidocr's own pipeline
        (one batch); a crop whose pixels were read before gives the lines read then."""
        height, width = rgb.shape[:2]
        x0, y0, x1, y1 = context_crop(want, width, height)
        # rapidocr treats a 3-channel ndarray as OpenCV BGR (LoadImage.convert_img converts
        # only files and PIL images), so the channels are swapped here; the copy also makes a
        # read-only or cropped (non-contiguous) view into a fresh contiguous array.
        bgr = np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1])
        key = f"{x0},{y0},{width},{height}:{_digest(bgr)}"
        lines = self._crops.get(key) if self.incremental else None
        if lines is None:
            result = self._call(bgr, use_det=True, use_rec=True, return_word_box=True)
            lines = tuple(_lines(result, (x0, y0), width, height))
            if self.incremental:
                _remember(self._crops, key, lines, CROP_CACHE_SIZE)
        else:
            self.stats.regions_reused += 1
        kept = [line for line in lines if box_centre_inside(line.box, want)]
        log.debug("read %d lines in a %dx%d crop", len(kept), x1 - x0, y1 - y0)
        return kept

    def _read_bands(self, rgb: np.ndarray) -> list[TextLine]:
        """The whole image, band by band; a band whose pixels did not change since the last
        read keeps the lines read then (identical to reading it again: detection and
        recognition are deterministic, and each line crop is recognized on its own)."""
        height, width = rgb.shape[:2]
        out: list[TextLine] = []
        seen: dict[int, _Band] = {}
        for band in bands(width, height):
            pixels = rgb[band.read_top:band.read_bottom]
            digest = _digest(pixels)
            old = self._bands.get(band.core_top)
            if self.incremental and old is not None and old.digest == digest \
                    and old.width == width and old.read_bottom == band.read_bottom:
                self.stats.bands_reused += 1
                kept = old
            else:
                self.stats.bands_read += 1
                same_rows = old is not None and old.width == width \
                    and old.read_bottom == band.read_bottom
                kept = _Band(band.core_top, band.core_bottom, band.read_top, band.read_bottom,
                             width, digest, self._read_band(pixels, band, width, height,
                                                            old.reads if same_rows and old
                                                            else ()))
            seen[band.core_top] = kept
            out.extend(kept.lines)
        self._bands = seen
        return out

    def _read_band(self, pixels: np.ndarray, band: Band, width: int, height: int,
                   before: Sequence[_Read]) -> tuple[_Read, ...]:
        """A band's segments; one read before at the same columns with the same pixels keeps
        its lines (the incremental read)."""
        last = {read.segment: read for read in before} if self.incremental else {}
        out = []
        for segment in segments(pixels):
            cut = pixels[:, segment.x0:segment.x1]
            digest = _digest(cut)
            old = last.get(segment)
            if old is not None and old.digest == digest:
                self.stats.segments_reused += 1
                out.append(old)
                continue
            self.stats.segments_read += 1
            out.append(_Read(segment, digest, tuple(self._read_segment(
                cut, band, segment, width, height))))
        return tuple(out)

    def _read_segment(self, pixels: np.ndarray, band: Band, segment: Segment, width: int,
                      height: int) -> list[TextLine]:
        """Detect lines in one segment's pixels and recognize those it owns: a line belongs
        to the band holding its centre's row and the segment holding its centre's column, so
        each line is read once."""
        from rapidocr.utils.process_img import get_rotate_crop_image

        bgr = np.ascontiguousarray(pixels[:, :, ::-1])
        found = self._call(bgr, use_det=True, use_rec=False, return_word_box=False)
        quads = getattr(found, "boxes", None)
        if quads is None or len(quads) == 0:
            return []
        lines = []
        for quad in quads:
            cx = float(np.mean(quad[:, 0])) + segment.x0
            cy = float(np.mean(quad[:, 1])) + band.read_top
            if not (band.core_top <= cy < band.core_bottom
                    and segment.own0 <= cx < segment.own1):
                continue  # another band's or another segment's line
            points = np.asarray(quad, dtype=np.float32).copy()
            crop = get_rotate_crop_image(bgr, points.copy())
            if crop.size == 0:
                continue
            line = self._recognize(crop, points, (segment.x0, band.read_top), width, height)
            if line is not None:
                lines.append(line)
        return lines

    def _recognize(self, crop: np.ndarray, quad: np.ndarray, offset: tuple[int, int],
                   width: int, height: int) -> TextLine | None:
        """One line crop recognized on its own (a batch of one, so its result never depends
        on the other crops), or its earlier result when these exact pixels were seen."""
        from rapidocr.cal_rec_boxes.main import CalRecBoxes

        key = _digest(crop)
        rec = self._recognized.get(key) if self.incremental else None
        if rec is None:
            self.stats.crops_recognized += 1
            result = self._call(np.ascontiguousarray(crop), use_det=False, use_rec=True,
                                return_word_box=True)
            txts = getattr(result, "txts", None) or ("",)
            scores = getattr(result, "scores", None) or (0.0,)
            infos = getattr(result, "word_results", None) or (None,)
            rec = (str(txts[0]), float(scores[0]), infos[0])
            if self.incremental:
                _remember(self._recognized, key, rec, REC_CACHE_SIZE)
        else:
            self.stats.crops_reused += 1
        text, score, info = rec
        if not text.strip() or score < self._min_score:
            return None
        words: tuple[TextBox, ...] = ()
        if info is not None:
            placed = _Placed(txts=(text,), word_results=(info,))
            try:
                boxed: Any = CalRecBoxes()([crop], quad[None], placed)  # type: ignore[arg-type]
                words = tuple(TextBox(str(t), _shift(q, *offset, width, height), float(s))
                              for t, s, q in boxed.word_results[0] if q is not None)
            except (ValueError, IndexError, TypeError) as exc:  # a line without word geometry
                log.debug("no word boxes for %r: %s", text, exc)
        if words and not _words_spell([(w.text, w.score, None) for w in words], text):
            words = ()
        return TextLine(text, _shift(quad, *offset, width, height), score, words)

    def _known_lines(self, rgb: np.ndarray, area: PixelBox) -> list[TextLine] | None:
        """The lines of the last full read in ``area``, when every band it touches still
        holds the same pixels; None when the area must be read."""
        if not self.incremental or not self._bands:
            return None
        height, width = rgb.shape[:2]
        out: list[TextLine] = []
        for band in self._bands.values():
            if band.read_bottom <= area[1] - BAND_MARGIN or band.read_top >= area[3] + BAND_MARGIN:
                continue
            if band.width != width or band.read_bottom > height or \
                    _digest(rgb[band.read_top:band.read_bottom]) != band.digest:
                return None
            out.extend(band.lines)
        return out

    def _call(self, bgr: np.ndarray, *, use_det: bool, use_rec: bool,
              return_word_box: bool) -> Any:
        engine = self._engine_once()
        try:
            # Every switch is passed on every call: rapidocr keeps the last ones as state.
            return engine(bgr, use_det=use_det, use_cls=False, use_rec=use_rec,
                          return_word_box=return_word_box)
        except Exception as exc:  # whatever onnxruntime or rapidocr raise: one error type out
            raise OcrError(f"rapidocr failed to read a {bgr.shape[1]}x{bgr.shape[0]} image: "
                           f"{exc}") from exc

    def _engine_once(self) -> RapidOCR:
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
            "Det.limit_side_len": MAX_SIDE,
            # ... and never shrink a wide 4K band before detecting (rapidocr's own cap is 2000).
            "Global.max_side_len": MAX_SIDE,
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


__all__ = ["Band", "FakeReader", "OcrError", "PixelBox", "RapidOcrReader", "ReadStats",
           "Segment", "TextBox", "TextLine", "TextReader", "bands", "box_centre_inside",
           "clip_region", "context_crop", "quad_to_box", "segments"]
