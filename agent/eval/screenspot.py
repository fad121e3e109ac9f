"""Read grounding records in ScreenSpot-v2's and ScreenSpot-Pro's own file layouts.

ScreenSpot-v2: ``screenspot_{desktop,mobile,web}_v2.json`` (JSON arrays) beside a
``screenspotv2_image/`` folder; each record has ``img_filename``, ``bbox`` as absolute
``[x, y, width, height]``, ``instruction``, ``data_type`` (text/icon) and ``data_source``.
ScreenSpot-Pro: ``annotations/*.json`` beside ``images/``; each record has ``img_filename``,
``bbox`` as absolute ``[x1, y1, x2, y2]``, ``img_size``, ``instruction``, ``platform``,
``application``, ``ui_type`` and ``group``. The layout is told from the files present.

A bad record is reported as ``file:line: message`` (the line where its object starts) and left
out; it never stops the others from being read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Layout = Literal["screenspot-v2", "screenspot-pro"]
V2_IMAGES = "screenspotv2_image"
V2_FILE = re.compile(r"screenspot_(\w+)_v2\.json")
PRO_ANNOTATIONS, PRO_IMAGES = "annotations", "images"


class DatasetError(ValueError):
    """The directory holds no dataset in a layout this reader knows."""


@dataclass(frozen=True, slots=True)
class GroundingRecord:
    """One labelled target: find ``instruction`` in ``image``; the truth is ``box``."""

    key: str  # unique in the dataset: "file#index"
    where: str  # "file:line", for messages
    image: Path
    instruction: str
    box: tuple[float, float, float, float]  # absolute pixels, x1 y1 x2 y2
    groups: dict[str, str] = field(default_factory=dict)  # e.g. type, platform, source
    size: tuple[int, int] | None = None  # (width, height) when the record states it


@dataclass(frozen=True, slots=True)
class Dataset:
    """The records read from a directory, and the ones left out with the reason."""

    layout: Layout
    records: tuple[GroundingRecord, ...]
    errors: tuple[str, ...] = ()


def detect(directory: Path) -> Layout:
    """Which layout ``directory`` holds; DatasetError when neither."""
    if (directory / PRO_ANNOTATIONS).is_dir():
        return "screenspot-pro"
    if any(V2_FILE.fullmatch(p.name) for p in directory.glob("*.json")):
        return "screenspot-v2"
    raise DatasetError(
        f"{directory}: no ScreenSpot data found: expected screenspot_*_v2.json beside "
        f"{V2_IMAGES}/ (ScreenSpot-v2) or {PRO_ANNOTATIONS}/*.json beside {PRO_IMAGES}/ "
        "(ScreenSpot-Pro)")


def read_dataset(directory: Path) -> Dataset:
    """Every record under ``directory``, in file-name order, then file order."""
    layout = detect(directory)
    records: list[GroundingRecord] = []
    errors: list[str] = []
    if layout == "screenspot-v2":
        files = sorted(p for p in directory.glob("*.json") if V2_FILE.fullmatch(p.name))
    else:
        files = sorted((directory / PRO_ANNOTATIONS).glob("*.json"))
    for path in files:
        for line, index, item in _array_items(path, errors):
            where = f"{path}:{line}"
            try:
                if layout == "screenspot-v2":
                    platform = V2_FILE.fullmatch(path.name).group(1)  # type: ignore[union-attr]
                    record = _v2(item, directory / V2_IMAGES, platform)
                else:
                    record = _pro(item, directory / PRO_IMAGES)
            except (KeyError, TypeError, ValueError) as exc:
                errors.append(f"{where}: record {index}: {_reason(exc)}")
                continue
            records.append(_placed(record, f"{path.name}#{index}", where))
    return Dataset(layout, tuple(records), tuple(errors))


def _array_items(path: Path, errors: list[str]) -> Iterator[tuple[int, int, Any]]:
    """The items of a JSON array file with the line each starts on; a syntax error ends the
    file with one ``file:line:col`` message (the items before it are still given)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path}: cannot read: {exc}")
        return
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()  # type: ignore[union-attr]
    if text[pos:pos + 1] != "[":
        errors.append(f"{path}:{text.count(chr(10), 0, pos) + 1}: expected a JSON array of "
                      "records")
        return
    pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
    index = 0
    if text[pos:pos + 1] == "]":
        return
    while True:
        line = text.count("\n", 0, pos) + 1
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}")
            return
        yield line, index, item
        index += 1
        pos = ws.match(text, pos).end()  # type: ignore[union-attr]
        if text[pos:pos + 1] == ",":
            pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
            continue
        if text[pos:pos + 1] != "]":
            errors.append(f"{path}:{text.count(chr(10), 0, pos) + 1}: expected ',' or ']' "
                          "after a record")
        return


def _reason(exc: BaseException) -> str:
    return f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)


def _text(item: dict[str, Any], name: str) -> str:
    value = item[name]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _numbers(item: dict[str, Any], name: str, count: int) -> list[float]:
    value = item[name]
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{name} must be a list of {count} numbers")
    return [float(v) for v in value]


def _image(folder: Path, item: dict[str, Any]) -> Path:
    name = _text(item, "img_filename")
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ValueError(f"img_filename {name!r} leaves the image folder")
    return path


def _v2(item: Any, images: Path, platform: str) -> GroundingRecord:
    if not isinstance(item, dict):
        raise TypeError("a record must be a JSON object")
    x, y, w, h = _numbers(item, "bbox", 4)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ValueError(f"bbox [x, y, width, height] needs a positive size at x, y >= 0, "
                         f"got {[x, y, w, h]}")
    return GroundingRecord("", "", _image(images, item), _text(item, "instruction"),
                           (x, y, x + w, y + h),
                           {"platform": platform, "type": _text(item, "data_type"),
                            "source": _text(item, "data_source")})


def _pro(item: Any, images: Path) -> GroundingRecord:
    if not isinstance(item, dict):
        raise TypeError("a record must be a JSON object")
    x1, y1, x2, y2 = _numbers(item, "bbox", 4)
    if not (0 <= x1 < x2 and 0 <= y1 < y2):
        raise ValueError(f"bbox [x1, y1, x2, y2] needs x1 < x2 and y1 < y2, got "
                         f"{[x1, y1, x2, y2]}")
    width, height = _numbers(item, "img_size", 2)
    if x2 > width or y2 > height:
        raise ValueError(f"bbox {[x1, y1, x2, y2]} lies outside img_size {[width, height]}")
    return GroundingRecord("", "", _image(images, item), _text(item, "instruction"),
                           (x1, y1, x2, y2),
                           {"platform": _text(item, "platform"),
                            "application": _text(item, "application"),
                            "type": _text(item, "ui_type"), "group": _text(item, "group")},
                           (int(width), int(height)))


def _placed(record: GroundingRecord, key: str, where: str) -> GroundingRecord:
    return GroundingRecord(key, where, record.image, record.instruction, record.box,
                           record.groups, record.size)


__all__ = ["Dataset", "DatasetError", "GroundingRecord", "Layout", "detect", "read_dataset"]
