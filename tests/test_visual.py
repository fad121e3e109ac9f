"""Visual regression: pixel comparison with a baseline, the diff picture, baseline files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.grounding import visual
from deskpilot.grounding.visual import compare, load_png, save_png
from tests.test_template import make_screen

RED = (255, 0, 0)


@pytest.fixture(scope="module")
def screen() -> np.ndarray:
    return make_screen()[0]


def test_identical_screens_pass(screen: np.ndarray) -> None:
    result = compare(screen, screen.copy())
    assert result.passed
    assert (result.changed_pixels, result.changed_fraction, result.max_delta) == (0, 0.0, 0)
    assert result.changed_box is None
    assert result.message == "0 pixels changed (0.00% of 1280x800, tolerance 0.10%)"
    assert result.diff is not None
    assert result.diff.shape == screen.shape
    assert not (result.diff == RED).all(axis=2).any()


def test_a_changed_rectangle_is_found_with_its_box(screen: np.ndarray) -> None:
    current = screen.copy()
    current[150:170, 400:440] = (255, 0, 255)  # 40x20 at (400, 150)
    result = compare(screen, current)
    assert result.changed_pixels == 800
    assert result.changed_box == (400, 150, 440, 170)
    assert result.changed_fraction == pytest.approx(800 / (1280 * 800))
    assert result.max_delta > 32
    assert result.passed  # 0.08 % is inside the default 0.10 %
    assert result.message == ("800 pixels changed (0.08% of 1280x800, tolerance 0.10%) "
                              "in (400,150)-(440,170)")
    assert not compare(screen, current, tolerance=0.0005).passed
    diff = result.diff
    assert diff is not None
    assert (diff[150:170, 400:440] == RED).all()
    assert not (diff[:140] == RED).all(axis=2).any()  # nothing red far from the change
    assert (diff[148, 398:442] == (255, 255, 0)).all()  # the box outline, just outside it


def test_thousands_are_grouped_in_the_message(screen: np.ndarray) -> None:
    current = screen.copy()
    current[700:702, 100:717] = (255, 0, 255)  # 617 x 2 on the plain desktop
    result = compare(screen, current)
    assert result.changed_pixels == 1234
    assert result.message.startswith("1,234 pixels changed (0.12% of 1280x800")
    assert not result.passed


def test_noise_below_the_pixel_threshold_passes(screen: np.ndarray) -> None:
    noise = np.random.default_rng(7).integers(-20, 21, screen.shape)
    current = np.clip(screen.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    result = compare(screen, current)
    assert result.passed
    assert result.changed_pixels == 0
    assert 0 < result.max_delta <= 20
    assert not compare(screen, current, pixel_threshold=10).passed


def test_the_tolerance_is_inclusive() -> None:
    base = np.zeros((100, 1000, 3), dtype=np.uint8)  # 100,000 pixels: 0.1 % is 100 of them
    at_limit = base.copy()
    at_limit[0, :100] = 255
    over = base.copy()
    over[0, :101] = 255
    assert compare(base, at_limit, tolerance=0.001).passed
    assert not compare(base, over, tolerance=0.001).passed


def test_a_region_ignores_changes_outside_it(screen: np.ndarray) -> None:
    current = screen.copy()
    current[10:20, 10:20] = (0, 255, 0)       # outside the region: ignored
    current[210:215, 310:330] = (0, 255, 0)   # inside: 100 pixels
    region = (300, 200, 400, 250)             # 100x50 = 5,000 pixels
    result = compare(screen, current, region=region)
    assert result.changed_pixels == 100
    assert result.changed_fraction == pytest.approx(100 / 5000)
    assert result.changed_box == (310, 210, 330, 215)  # screenshot pixels, not region-relative
    assert not result.passed
    assert "of the 100x50 region at (300,200)" in result.message
    quiet = screen.copy()
    quiet[10:20, 10:20] = (0, 255, 0)
    assert compare(screen, quiet, region=region).passed
    with pytest.raises(ValueError, match="no pixels"):
        compare(screen, current, region=(2000, 0, 2100, 10))


def test_a_size_mismatch_fails_without_a_diff(screen: np.ndarray) -> None:
    result = compare(screen, screen[:700])
    assert not result.passed
    assert result.diff is None
    assert result.changed_box is None
    assert result.message == "screen size changed: baseline 1280x800, current 1280x700"


def test_inputs_are_checked(screen: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        compare(screen.astype(np.float32), screen)
    with pytest.raises(ValueError, match="tolerance"):
        compare(screen, screen, tolerance=2.0)


def test_png_round_trip_is_exact_and_leaves_no_temp_file(tmp_path: Path,
                                                         screen: np.ndarray) -> None:
    path = tmp_path / "baselines" / "main-window.png"
    save_png(path, screen)  # a read-only array, as frames are
    assert np.array_equal(load_png(path), screen)
    save_png(path, screen[::-1].copy())  # replacing an existing baseline
    assert np.array_equal(load_png(path), screen[::-1])
    assert sorted(p.name for p in path.parent.iterdir()) == ["main-window.png"]


def test_a_failed_save_keeps_the_old_file(tmp_path: Path, screen: np.ndarray,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "baseline.png"
    save_png(path, screen)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(visual.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_png(path, np.zeros_like(screen))
    monkeypatch.undo()
    assert np.array_equal(load_png(path), screen)
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.png"]
