"""The grounding cache: a grounded target's screen crop, verified on the screen before reuse.

Each entry is ``<key>.png`` (the crop) and ``<key>.json`` (where the target and the crop were,
and a label for people). :func:`replay` never trusts a stored position blindly: it finds the
crop on the current screenshot and reports a :class:`Hit` (in place or relocated), a
:class:`Miss` (no entry) or a :class:`Stale` entry (gone or ambiguous), and the caller decides
between failing the step and grounding afresh.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deskpilot.grounding.template import (
    AmbiguousMatch,
    Located,
    NotOnScreen,
    PixelBox,
    Snippet,
    locate,
)
from deskpilot.grounding.visual import load_png, save_png, write_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Keys become file names: hex only, so no key can reach outside the cache directory.
_KEY = re.compile(r"[0-9a-f]{8,64}")


class CacheMode(StrEnum):
    """How a run uses the grounding cache."""

    READ_WRITE = "read-write"
    READ_ONLY = "read-only"
    OFF = "off"


def cache_key(task: str, target: str, screen: tuple[int, int]) -> str:
    """A stable key for one target of one task on one screen size (width, height)."""
    canonical = json.dumps({"task": task, "target": target,
                            "screen": [int(screen[0]), int(screen[1])]},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Hit:
    """The cached target is on the screen: ``located`` says where (and whether it moved)."""

    located: Located
    snippet: Snippet


@dataclass(frozen=True, slots=True)
class Miss:
    """There is no usable cache entry for the key."""


@dataclass(frozen=True, slots=True)
class Stale:
    """A cache entry exists but its crop is not on the screen, or is at several places."""

    reason: str
    best_score: float | None
    ambiguous: bool


class GroundingCache:
    """Snippets of grounded targets in one directory, keyed by :func:`cache_key`."""

    def __init__(self, directory: Path, mode: CacheMode) -> None:
        self.directory = Path(directory)
        self.mode = CacheMode(mode)

    def get(self, key: str) -> Snippet | None:
        """The stored snippet, or None when the cache is off, the entry absent or unreadable."""
        if self.mode is CacheMode.OFF:
            return None
        png, meta = self._paths(key)
        if not meta.exists() and not png.exists():
            return None
        try:
            return _read_entry(png, meta)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # A broken entry must cost a fresh grounding, never the run.
            log.warning("ignoring unreadable grounding cache entry %s: %s", meta, exc)
            return None

    def put(self, key: str, snippet: Snippet, *, label: str) -> bool:
        """Store a snippet (read-write mode only); returns whether it was written."""
        if self.mode is not CacheMode.READ_WRITE:
            return False
        png, meta = self._paths(key)
        width, height = snippet.size
        record = {
            "version": FORMAT_VERSION,
            "label": label,
            "box": list(snippet.box),
            "origin": list(snippet.origin),
            "crop": [width, height],
            "pixels": _digest(snippet.rgb),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # The crop first: the JSON is what makes an entry exist, and a crop that does not
            # fit its JSON (a write cut short between the two) is rejected on reading.
            save_png(png, snippet.rgb)
            write_atomic(meta, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
        except OSError as exc:
            log.warning("could not write grounding cache entry %s: %s", meta, exc)
            return False
        log.debug("cached %s as %s", label, key)
        return True

    def forget(self, key: str) -> bool:
        """Delete an entry (read-write mode only); returns whether anything was removed."""
        if self.mode is not CacheMode.READ_WRITE:
            return False
        removed = False
        for path in self._paths(key):
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                pass
        return removed

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a grounding cache key: {key!r}")
        return self.directory / f"{key}.png", self.directory / f"{key}.json"


def replay(cache: GroundingCache, key: str, rgb: np.ndarray, *,
           threshold: float = 0.9) -> Hit | Miss | Stale:
    """Look the key up and verify its crop on ``rgb``; not-found and ambiguous become Stale."""
    snippet = cache.get(key)
    if snippet is None:
        return Miss()
    try:
        located = locate(rgb, snippet, threshold=threshold)
    except AmbiguousMatch as exc:
        log.info("cached target %s is ambiguous: %s", key, exc)
        return Stale(str(exc), max(exc.scores), ambiguous=True)
    except NotOnScreen as exc:
        log.info("cached target %s is stale: %s", key, exc)
        return Stale(str(exc), exc.best_score, ambiguous=False)
    if located.moved:
        log.info("cached target %s moved by %s to %s", key, located.offset, located.box)
    return Hit(located, snippet)


def _read_entry(png: Path, meta: Path) -> Snippet:
    """Read and check one entry; any inconsistency raises ValueError."""
    record = json.loads(meta.read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError("the metadata is not a JSON object")
    if record.get("version") != FORMAT_VERSION:
        raise ValueError(f"unknown format version {record.get('version')!r}")
    x1, y1, x2, y2 = _ints(record, "box", 4)
    ox, oy = _ints(record, "origin", 2)
    width, height = _ints(record, "crop", 2)
    rgb = load_png(png)
    if rgb.shape[:2] != (height, width):
        raise ValueError(f"the crop is {rgb.shape[1]}x{rgb.shape[0]}, the metadata says "
                         f"{width}x{height}")
    # Two runs storing the same key at once (deskpilot run --concurrency) each replace both
    # files atomically, but the pair can end up mixed: the JSON names its own crop.
    if "pixels" in record and record["pixels"] != _digest(rgb):
        raise ValueError("the crop is not the one the metadata was written with")
    rgb.flags.writeable = False
    box: PixelBox = (x1, y1, x2, y2)
    return Snippet(rgb, box, (ox, oy))  # checks the box is in the crop and the crop textured


def _digest(rgb: np.ndarray) -> str:
    """A short hash of a crop's pixels (PNG is lossless: the same after a round trip)."""
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()[:16]


def _ints(record: dict[str, Any], name: str, count: int) -> list[int]:
    value = record.get(name)
    # bool is an int to Python but never a coordinate.
    if not (isinstance(value, list) and len(value) == count
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{name!r} must be a list of {count} integers, got {value!r}")
    return value
