"""The grounding cache: a grounded target's screen crop, verified on the screen before reuse.

Each entry is ``<key>.png`` (the crop) and ``<key>.json`` (where the target and the crop were,
what the target was grounded on, a label for people, and a digest). :func:`replay` never trusts
a stored position blindly: it finds the crop on the current screenshot and reports a
:class:`Hit` (in place or relocated), a :class:`Miss` (no entry) or a :class:`Stale` entry
(gone or ambiguous), and the caller decides between failing the step and grounding afresh.

An entry's digest covers its key, its geometry, the text it was grounded on and the crop's
pixels: an entry copied under another key (another button's crop) or edited is not read. A
digest is no signature (anyone who can write the cache can recompute it), so on a hit the caller
also reads the text under the found crop again and compares it with ``grounded_on``.
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

from deskpilot.grounding.files import read_regular_file
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

FORMAT_VERSION = 2
MAX_META_BYTES = 64 * 1024  # an entry's JSON is a few hundred bytes
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
    grounded_on: str = ""  # the text read on the target when it was grounded ("" for none)


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
        entry = self.entry(key)
        return None if entry is None else entry[0]

    def entry(self, key: str) -> tuple[Snippet, str] | None:
        """The stored snippet and the text it was grounded on, or None (see :meth:`get`)."""
        if self.mode is CacheMode.OFF:
            return None
        png, meta = self._paths(key)
        if not meta.exists() and not png.exists():
            return None
        try:
            return _read_entry(key, png, meta)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # A broken entry must cost a fresh grounding, never the run.
            log.warning("ignoring unreadable grounding cache entry %s: %s", meta, exc)
            return None

    def put(self, key: str, snippet: Snippet, *, label: str, grounded_on: str = "") -> bool:
        """Store a snippet (read-write mode only); returns whether it was written.

        ``grounded_on`` is the text read on the target when it was grounded: a hit is only
        trusted while the same text is read there.
        """
        if self.mode is not CacheMode.READ_WRITE:
            return False
        png, meta = self._paths(key)
        width, height = snippet.size
        record = {
            "version": FORMAT_VERSION,
            "label": label,
            "grounded_on": grounded_on,
            "box": list(snippet.box),
            "origin": list(snippet.origin),
            "crop": [width, height],
            "digest": _digest(key, snippet.box, snippet.origin, grounded_on, snippet.rgb),
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
    entry = cache.entry(key)
    if entry is None:
        return Miss()
    snippet, grounded_on = entry
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
    return Hit(located, snippet, grounded_on)


def _read_entry(key: str, png: Path, meta: Path) -> tuple[Snippet, str]:
    """Read and check one entry; any inconsistency raises ValueError."""
    record = json.loads(read_regular_file(meta, MAX_META_BYTES).decode("utf-8"))
    if not isinstance(record, dict):
        raise ValueError("the metadata is not a JSON object")
    if record.get("version") != FORMAT_VERSION:
        raise ValueError(f"unknown format version {record.get('version')!r}")
    x1, y1, x2, y2 = _ints(record, "box", 4)
    ox, oy = _ints(record, "origin", 2)
    width, height = _ints(record, "crop", 2)
    grounded_on = record.get("grounded_on")
    if not isinstance(grounded_on, str):
        raise ValueError(f"'grounded_on' must be a string, got {grounded_on!r}")
    rgb = load_png(png)
    if rgb.shape[:2] != (height, width):
        raise ValueError(f"the crop is {rgb.shape[1]}x{rgb.shape[0]}, the metadata says "
                         f"{width}x{height}")
    box: PixelBox = (x1, y1, x2, y2)
    # The digest ties the crop to this key and this metadata: an entry copied from another key,
    # edited, or mixed by two runs storing the same key at once (--concurrency) is refused.
    if record.get("digest") != _digest(key, box, (ox, oy), grounded_on, rgb):
        raise ValueError("the digest does not match the entry's key, metadata and crop")
    rgb.flags.writeable = False
    # Snippet checks the box is in the crop and the crop textured.
    return Snippet(rgb, box, (ox, oy)), grounded_on


def _digest(key: str, box: tuple[int, ...], origin: tuple[int, ...], grounded_on: str,
            rgb: np.ndarray) -> str:
    """sha256 over what an entry says (PNG is lossless: the pixels survive a round trip)."""
    head = json.dumps({"key": key, "box": list(box), "origin": list(origin),
                       "grounded_on": grounded_on, "shape": list(rgb.shape)},
                      sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(head.encode("utf-8"))
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


def _ints(record: dict[str, Any], name: str, count: int) -> list[int]:
    value = record.get(name)
    # bool is an int to Python but never a coordinate.
    if not (isinstance(value, list) and len(value) == count
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{name!r} must be a list of {count} integers, got {value!r}")
    return value
