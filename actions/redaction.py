"""One run's secrets, hidden in everything the run writes: text, JSON records and images.

:class:`Redaction` is what every writer of a run (its directory, the task records, the cache)
asks. Text goes through :func:`actions.text.redact` (exact, escaped, near and cut-off copies);
images are masked: the screen boxes where the run typed a secret, and every line OCR reads as a
copy of one, are filled black before the image is kept. Each masked image is counted and
logged, so a report can say that it hides something.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from deskpilot.actions.text import contains_secret, redact
from deskpilot.grounding.geometry import PixelBox
from deskpilot.grounding.ocr import OcrError, TextReader

log = logging.getLogger(__name__)

MASK_MARGIN = 3  # pixels added around a masked box: anti-aliased glyph edges stay readable


class Redaction:
    """The secret values of a run, and the image boxes known to show them.

    ``reader`` reads images before they are kept (only when there are secrets); without one
    only the recorded boxes are masked. The values live in memory only.
    """

    def __init__(self, secrets: Iterable[str] = (), reader: TextReader | None = None) -> None:
        self.secrets: tuple[str, ...] = tuple(sorted({s for s in secrets if s}, key=len,
                                                     reverse=True))
        self.reader = reader
        self._boxes: list[PixelBox] = []
        self._lock = threading.Lock()
        self.masked_images = 0

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, text: str) -> str:
        """``text`` with every copy of a secret hidden."""
        return redact(text, self.secrets)

    def data(self, value: Any) -> Any:
        """A JSON-ready value with every string in it redacted (keys included)."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def holds(self, text: str) -> bool:
        """Whether ``text`` holds a copy of a secret."""
        return bool(self.secrets) and contains_secret(text, self.secrets)

    def remember(self, box: PixelBox) -> None:
        """A screen box (image pixels) that shows a secret: masked in every later image."""
        with self._lock:
            if box not in self._boxes:
                self._boxes.append(box)

    def find(self, rgb: np.ndarray) -> list[PixelBox]:
        """The boxes of ``rgb`` that show a secret: the remembered ones and what OCR reads as
        one. An OCR failure leaves only the remembered boxes (logged)."""
        if not self.secrets:
            return []
        with self._lock:
            boxes = list(self._boxes)
        if self.reader is not None:
            try:
                lines = self.reader.read(rgb)
            except OcrError as exc:
                log.warning("cannot read an image for secrets to mask: %s", exc)
                lines = []
            for line in lines:
                if self.holds(line.text):
                    boxes.append(line.box)
                else:
                    boxes.extend(w.box for w in line.words if self.holds(w.text))
        return boxes

    def image(self, rgb: np.ndarray, boxes: Sequence[PixelBox] | None = None
              ) -> tuple[np.ndarray, int]:
        """``rgb`` with the secret boxes filled black, and how many were filled; the array is
        the same object when nothing was masked."""
        found = self.find(rgb) if boxes is None else list(boxes)
        if not found:
            return rgb, 0
        out = np.array(rgb, copy=True)
        height, width = out.shape[:2]
        for x1, y1, x2, y2 in found:
            out[max(0, y1 - MASK_MARGIN):min(height, y2 + MASK_MARGIN),
                max(0, x1 - MASK_MARGIN):min(width, x2 + MASK_MARGIN)] = 0
        with self._lock:
            self.masked_images += 1
        log.info("masked %d secret area(s) in an image before keeping it", len(found))
        return out, len(found)


NO_SECRETS = Redaction()
"""The redaction of a run without secrets: nothing to hide."""
