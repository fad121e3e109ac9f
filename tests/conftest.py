"""Shared fixtures: a private Xvfb display, and a model server, each shared by the tests
that need one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from deskpilot.grounding.xvfb import xvfb
from deskpilot.models.serve_local import LocalServer


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


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """llama-cpp-python's OpenAI-compatible server on loopback, for the whole session.

    Its ``mtmd`` handler cannot hand Phi-4-RV's own chat template an image (the template
    joins content as a string), so it serves a copy of the tiny model with
    :func:`models.serving.serving_template` stamped in, as docs/scaling.md tells users to.
    The server logs each rendered prompt (``.log``), which the tests read back.
    """
    from deskpilot.models.serve_local import ServerError, local_server

    try:
        with local_server(tmp_path_factory.mktemp("llama-server"), timeout_s=60,
                          verbose=True) as server:
            yield server
    except ServerError as exc:
        pytest.fail(str(exc))
