"""The grounding cache: keys, entries on disk, modes, broken entries, and verified replay."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from deskpilot.agent.tasks.cache import (
    CacheMode,
    GroundingCache,
    Hit,
    Miss,
    Stale,
    cache_key,
    replay,
)
from deskpilot.grounding.template import PixelBox, Snippet, cut
from deskpilot.grounding.visual import load_png, save_png
from tests.test_template import WINDOW_AT, make_screen

KEY = cache_key("save the report", "text:Save", (1280, 800))
Screen = tuple[np.ndarray, dict[str, PixelBox]]


@pytest.fixture(scope="module")
def screen() -> Screen:
    return make_screen()


@pytest.fixture
def snippet(screen: Screen) -> Snippet:
    rgb, boxes = screen
    return cut(rgb, boxes["Save"])


def filled(directory: Path, snippet: Snippet, key: str = KEY) -> GroundingCache:
    cache = GroundingCache(directory, CacheMode.READ_WRITE)
    assert cache.put(key, snippet, label="text:Save")
    return cache


def test_keys_are_short_stable_and_depend_on_all_three_parts() -> None:
    assert len(KEY) == 20
    assert int(KEY, 16) >= 0
    assert cache_key("save the report", "text:Save", (1280, 800)) == KEY
    others = {cache_key("save the report", "text:Save", (1920, 1080)),
              cache_key("save the report", "text:Save", (800, 1280)),
              cache_key("save the report", "target:the Save button", (1280, 800)),
              cache_key("save the draft", "text:Save", (1280, 800))}
    assert KEY not in others
    assert len(others) == 4


def test_put_then_get_round_trips(tmp_path: Path, snippet: Snippet) -> None:
    directory = tmp_path / "cache" / "nested"  # created on the first put
    filled(directory, snippet)
    back = GroundingCache(directory, CacheMode.READ_ONLY).get(KEY)
    assert back is not None
    assert np.array_equal(back.rgb, snippet.rgb)
    assert (back.box, back.origin) == (snippet.box, snippet.origin)
    meta = json.loads((directory / f"{KEY}.json").read_text(encoding="utf-8"))
    assert meta["version"] == 2
    assert meta["label"] == "text:Save"
    assert meta["box"] == list(snippet.box)
    assert meta["origin"] == list(snippet.origin)
    assert meta["crop"] == list(snippet.size)
    assert dt.datetime.fromisoformat(meta["created"]).tzinfo is not None
    assert sorted(p.name for p in directory.iterdir()) == [f"{KEY}.json", f"{KEY}.png"]


def test_read_only_never_writes(tmp_path: Path, snippet: Snippet) -> None:
    cache = GroundingCache(tmp_path / "cache", CacheMode.READ_ONLY)
    assert not cache.put(KEY, snippet, label="text:Save")
    assert not (tmp_path / "cache").exists()
    filled(tmp_path / "cache", snippet)
    assert not cache.forget(KEY)
    assert cache.get(KEY) is not None


def test_off_reads_and_writes_nothing(tmp_path: Path, snippet: Snippet) -> None:
    filled(tmp_path, snippet)
    cache = GroundingCache(tmp_path, CacheMode.OFF)
    assert cache.get(KEY) is None
    assert not cache.put(cache_key("t", "text:Open", (1280, 800)), snippet, label="text:Open")
    assert len(list(tmp_path.iterdir())) == 2


def test_an_absent_entry_is_none_without_a_warning(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="deskpilot.agent.tasks.cache"):
        assert GroundingCache(tmp_path / "nowhere", CacheMode.READ_WRITE).get(KEY) is None
    assert not caplog.records


def _edit(directory: Path, **changes: object) -> None:
    path = directory / f"{KEY}.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta.update(changes)
    path.write_text(json.dumps(meta), encoding="utf-8")


def _flat_png(directory: Path) -> None:
    path = directory / f"{KEY}.png"
    save_png(path, np.full_like(load_png(path), 200))


@pytest.mark.parametrize(("name", "damage"), [
    ("json-garbage", lambda d: (d / f"{KEY}.json").write_text("{not json", encoding="utf-8")),
    ("json-list", lambda d: (d / f"{KEY}.json").write_text("[1, 2]", encoding="utf-8")),
    ("json-version", lambda d: _edit(d, version=1)),
    ("json-box", lambda d: _edit(d, box=[1, 2, "3", 4])),
    ("json-bool", lambda d: _edit(d, origin=[True, 0])),
    ("json-crop-size", lambda d: _edit(d, crop=[10, 10])),
    ("json-box-outside-crop", lambda d: _edit(d, box=[0, 0, 5000, 5000])),
    ("json-missing", lambda d: (d / f"{KEY}.json").unlink()),
    ("png-garbage", lambda d: (d / f"{KEY}.png").write_bytes(b"\x89PNG not really")),
    ("png-truncated", lambda d: (d / f"{KEY}.png").write_bytes(
        (d / f"{KEY}.png").read_bytes()[:200])),
    ("png-missing", lambda d: (d / f"{KEY}.png").unlink()),
    ("png-flat", _flat_png),
])
def test_a_broken_entry_is_absent_with_a_warning(
        tmp_path: Path, snippet: Snippet, caplog: pytest.LogCaptureFixture,
        name: str, damage: Callable[[Path], object]) -> None:
    cache = filled(tmp_path, snippet)
    damage(tmp_path)
    with caplog.at_level(logging.WARNING, logger="deskpilot.agent.tasks.cache"):
        assert cache.get(KEY) is None
    assert any("unreadable grounding cache entry" in r.getMessage() for r in caplog.records), name


def test_forget_removes_the_entry(tmp_path: Path, snippet: Snippet) -> None:
    cache = filled(tmp_path, snippet)
    assert cache.forget(KEY)
    assert cache.get(KEY) is None
    assert not cache.forget(KEY)
    assert list(tmp_path.iterdir()) == []


def test_a_key_that_is_not_hex_is_refused(tmp_path: Path) -> None:
    cache = GroundingCache(tmp_path, CacheMode.READ_WRITE)
    with pytest.raises(ValueError, match="not a grounding cache key"):
        cache.get("../../etc/passwd")


def test_an_unwritable_directory_is_reported_not_raised(
        tmp_path: Path, snippet: Snippet, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    cache = GroundingCache(blocker / "cache", CacheMode.READ_WRITE)
    with caplog.at_level(logging.WARNING, logger="deskpilot.agent.tasks.cache"):
        assert not cache.put(KEY, snippet, label="text:Save")
    assert any("could not write" in r.getMessage() for r in caplog.records)


def test_replay_misses_without_an_entry(tmp_path: Path,
                                        screen: Screen) -> None:
    cache = GroundingCache(tmp_path, CacheMode.READ_ONLY)
    assert replay(cache, KEY, screen[0]) == Miss()
    assert replay(GroundingCache(tmp_path, CacheMode.OFF), KEY, screen[0]) == Miss()


def test_replay_hits_in_place(tmp_path: Path, snippet: Snippet,
                              screen: Screen) -> None:
    rgb, boxes = screen
    outcome = replay(filled(tmp_path, snippet), KEY, rgb)
    assert isinstance(outcome, Hit)
    assert outcome.located.box == boxes["Save"]
    assert not outcome.located.moved


def test_replay_relocates_a_moved_target(tmp_path: Path, snippet: Snippet,
                                         screen: Screen) -> None:
    _, boxes = screen
    moved, _ = make_screen((WINDOW_AT[0] + 37, WINDOW_AT[1] - 12))
    outcome = replay(filled(tmp_path, snippet), KEY, moved)
    assert isinstance(outcome, Hit)
    assert outcome.located.offset == (37, -12)
    x1, y1, x2, y2 = boxes["Save"]
    assert outcome.located.box == (x1 + 37, y1 - 12, x2 + 37, y2 - 12)


def test_replay_reports_a_removed_target_as_stale(tmp_path: Path, snippet: Snippet) -> None:
    gone, _ = make_screen(omit=["Save"])
    outcome = replay(filled(tmp_path, snippet), KEY, gone)
    assert isinstance(outcome, Stale)
    assert not outcome.ambiguous
    assert outcome.best_score is not None
    assert outcome.best_score < 0.9
    assert "not on screen" in outcome.reason


def test_replay_reports_an_ambiguous_target_as_stale(
        tmp_path: Path, screen: Screen) -> None:
    rgb, boxes = screen
    cache = filled(tmp_path, cut(rgb, boxes["OK-1"]))
    moved, _ = make_screen((WINDOW_AT[0] + 37, WINDOW_AT[1] - 12))
    outcome = replay(cache, KEY, moved)
    assert isinstance(outcome, Stale)
    assert outcome.ambiguous
    assert outcome.best_score is not None
    assert outcome.best_score > 0.99
    assert "2 places" in outcome.reason
