"""The gate's blind spots and the private display, on real Xvfb displays with a real xterm.

Each task runs the real CLI headless on its own Xvfb; a shell in the xterm writes a marker file
only if a command reached it. Issue 14, classes 1, 2, 5 and 11.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from deskpilot.grounding.xvfb import authority_file, display_env, launched, xvfb
from tests.test_security_e2e import deskpilot

pytestmark = [
    pytest.mark.display,
    pytest.mark.skipif(not all(shutil.which(p) for p in ("Xvfb", "xterm", "xdotool",
                                                         "xdpyinfo")),
                       reason="needs Xvfb, xterm, xdotool and xdpyinfo (make test-deps)"),
]

XTERM = ("xterm -fn 10x20 -geometry 60x8+60+100 -xrm 'XTerm*allowSendEvents: true' "
         "{extra} -e sh")


def task(path: Path, name: str, launch: str, steps: list[str], env: str = "") -> Path:
    body = (f"name: {name}\nsetup:\n  launch:\n    - command: {json.dumps(launch)}\n"
            f"      wait_for: {{window: {name}}}\n{env}"
            "steps:\n  - click: {at: [300, 160]}\n" + "".join(f"  - {s}\n" for s in steps))
    path.write_text(body)
    return path


def incidents(summary: Path) -> list[list[dict[str, str]]]:
    out = []
    for t in json.loads(summary.read_text())["tasks"]:
        log = Path(t["run_dir"]) / "incidents.jsonl"
        out.append([json.loads(x) for x in log.read_text().splitlines()] if log.exists() else [])
    return out


def test_spelled_commands_pastes_and_prompts_in_unknown_windows_are_stopped(
        tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    touch = f"touch {marker}"
    spelled = task(tmp_path / "a.yaml", "spelled", XTERM.format(extra="-T spelled"),
                   [f"key: '{c}'" if c != " " else "key: space" for c in touch] + ["key: enter"])
    pasted = task(tmp_path / "b.yaml", "pasted", XTERM.format(extra="-T pasted"),
                  ["key: alt+shift+insert", "key: ctrl+shift+insert"])
    # A terminal under a name no list knows (an IDE's pane, an unlisted emulator) that shows a
    # shell prompt; the control shows none, and typing into it goes through.
    disguised = task(tmp_path / "c.yaml", "devpane",
                     XTERM.format(extra="-class Devpane -name devpane -T devpane"),
                     [f"type: '{touch}'", "key: enter"],
                     env="      env: {PS1: 'dev@buildbox:~/src$ '}\n")
    plain = task(tmp_path / "d.yaml", "quietpane",
                 XTERM.format(extra="-class Quietpane -name quietpane -T quietpane"),
                 ["type: 'echo hello'"], env="      env: {PS1: ''}\n")
    summary = tmp_path / "s.json"
    done = deskpilot(spelled, pasted, disguised, plain, "--headless", "--xvfb",
                     "--summary", summary, "--runs-dir", tmp_path / "runs",
                     "--cache", "off")
    assert done.returncode == 1, done.stdout + done.stderr
    statuses = [t["status"] for t in json.loads(summary.read_text())["tasks"]]
    assert statuses == ["failed", "failed", "failed", "passed"], done.stdout
    logged = incidents(summary)
    first = [(i["verdict"], i["category"]) for i in logged[0]]
    assert first == [("denied", "terminal_typing")]
    assert "key by key" in logged[0][0]["reason"]
    assert [i["category"] for i in logged[1]] == ["terminal_typing"]
    assert "alt+shift+insert" in logged[1][0]["reason"]
    assert [i["category"] for i in logged[2]] == ["terminal_typing"]
    assert "shell prompt" in logged[2][0]["reason"]
    assert logged[3] == []
    assert not marker.exists(), "a command reached a shell"


def test_a_private_display_refuses_clients_without_its_cookie(tmp_path: Path) -> None:
    with xvfb() as name:
        auth = authority_file()
        assert stat.S_IMODE(auth.stat().st_mode) == 0o600
        assert stat.S_IMODE(auth.parent.stat().st_mode) == 0o700
        allowed = subprocess.run(["xdpyinfo"], env=display_env(name), capture_output=True,
                                 text=True, timeout=20, check=False)
        assert allowed.returncode == 0, allowed.stderr
        for stranger in ("/dev/null", str(tmp_path / "missing")):
            env = {**display_env(name), "XAUTHORITY": stranger}
            for probe in (["xdpyinfo"], ["xwininfo", "-root"], ["xdotool", "mousemove", "5", "5"]):
                refused = subprocess.run(probe, env=env, capture_output=True, text=True,
                                         timeout=20, check=False)
                assert refused.returncode != 0, (probe, refused.stdout)
        # A program it launches inherits the cookie (and its own window shows up).
        with launched(["xterm", "-T", "cookie-check", "-e", "sh", "-c", "sleep 5"], name,
                      window="cookie-check") as proc:
            assert proc.poll() is None
        server = subprocess.run(["ps", "-ww", "-o", "args=", "-C", "Xvfb"], capture_output=True,
                                text=True, check=False).stdout
        assert any(f"-auth {auth.parent}/server-" in line for line in server.splitlines())


def test_a_display_number_used_again_gets_its_new_cookie_not_the_old_one() -> None:
    """Xvfb -displayfd hands out the lowest free number, so one process running display after
    display (a Desktop per test) meets the same name with a new server and a new cookie."""
    entries = []
    for _ in range(3):
        with xvfb() as name:
            done = subprocess.run(["xdpyinfo"], env=display_env(name), capture_output=True,
                                  text=True, timeout=20, check=False)
            assert done.returncode == 0, (name, done.stderr)
            entries.append(authority_file().read_bytes().count(b"MIT-MAGIC-COOKIE-1"))
    assert entries[0] >= 1 and len(set(entries)) == 1, entries  # stopped servers leave none
