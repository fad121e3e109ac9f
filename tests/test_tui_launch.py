"""Native output is kept off the interface; the interface opens only where a person watches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from deskpilot.agent.cli.main import parse_run
from deskpilot.agent.cli.words import wants_tui
from deskpilot.tui.launch import native_output_to


def test_native_output_goes_to_the_file_and_the_interface_keeps_the_terminal(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "native.log"
    with native_output_to(log):
        os.write(2, b"ggml: from C on stderr\n")  # what llama.cpp's fprintf(stderr) does
        os.write(1, b"ggml: from C on stdout\n")
        sys.__stderr__.write("drawn by the interface\n")  # type: ignore[union-attr]
        sys.__stderr__.flush()  # type: ignore[union-attr]
        print("python print")
    out, err = capfd.readouterr()
    assert log.read_text() == "ggml: from C on stderr\nggml: from C on stdout\n"
    assert "drawn by the interface" in err and "ggml" not in err + out
    assert "python print" in out
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    os.write(2, b"after\n")  # the descriptors are back
    assert "after" in capfd.readouterr().err


def test_the_interface_opens_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse_run(["run", "do it"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert wants_tui(args)
    assert not wants_tui(parse_run(["run", "do it", "--no-tui"]))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)  # piped into a file or a CI log
    assert not wants_tui(args)


def test_a_bad_kill_key_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from deskpilot.agent.cli.main import main

    monkeypatch.setenv("DISPLAY", ":9999")
    assert main(["run", "do it", "--kill-key", "k"]) == 2
    assert "--kill-key" in capsys.readouterr().err
