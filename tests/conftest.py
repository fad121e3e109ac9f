"""Shared fixtures: a private Xvfb display shared by the tests that need one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from grounding.xvfb import xvfb


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """One Xvfb display (1280x800) for the whole session.

    Session-wide because pyautogui binds to the display it first sees and cannot be re-pointed.
    """
    old = os.environ.get("DISPLAY")
    with xvfb() as name:
        os.environ["DISPLAY"] = name
        try:
            yield name
        finally:
            if old is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = old
