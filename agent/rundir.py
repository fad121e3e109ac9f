"""The run directory: a JSONL trajectory, the screenshots, and the run's header and result.

It is private to the user (directory 0700, files 0600) and created before the agent acts, so
an unwritable location stops the run before anything happens without a record. Everything it
writes passes the run's :class:`~deskpilot.actions.redaction.Redaction` first: secrets become
``[secret]`` in every JSON file, and are masked in every image.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deskpilot.actions.redaction import NO_SECRETS, Redaction
from deskpilot.agent.records import RunResult, StepRecord

log = logging.getLogger(__name__)

TRAJECTORY = "trajectory.jsonl"


class RunDirError(OSError):
    """The run directory cannot be created or written."""


def default_runs_root() -> Path:
    """``$DESKPILOT_RUNS`` or ``$XDG_STATE_HOME/deskpilot/runs`` (~/.local/state/...)."""
    if env := os.environ.get("DESKPILOT_RUNS"):
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "deskpilot" / "runs"


def _private_write(path: Path, data: bytes, *, append: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "ab" if append else "wb") as fh:
        fh.write(data)


class RunDir:
    """Writes one run's artifacts under a fresh time-stamped directory."""

    def __init__(self, root: Path, *, name: str | None = None,
                 redaction: Redaction = NO_SECRETS) -> None:
        self.redaction = redaction
        stamp = name or dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        self.path = Path(root) / stamp
        try:
            Path(root).mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path.mkdir(mode=0o700)
            (self.path / "screens").mkdir(mode=0o700)
            _private_write(self.path / TRAJECTORY, b"")
            self._writer = _ImageWriter()
        except OSError as exc:
            raise RunDirError(f"cannot write the run directory {self.path}: {exc.strerror or exc}"
                              ) from exc

    @property
    def trajectory(self) -> Path:
        """The JSONL file with one line per step."""
        return self.path / TRAJECTORY

    def write_header(self, header: dict[str, Any]) -> None:
        """Record what the run is (task, model, screen) before the first step."""
        self._json("run.json", header)

    def save_screenshot(self, index: int, rgb: np.ndarray) -> str:
        """Store a step's screenshot as PNG; returns its path relative to the run directory."""
        return self.save_image(f"step-{index:04d}", rgb)

    def save_image(self, name: str, rgb: np.ndarray) -> str:
        """Queue an image for ``screens/NAME.png``; returns its path relative to the run.

        Encoding a PNG costs 20-120 ms (1080p-4K), so a writer thread does it off the agent's
        hot path; :meth:`flush` (called by ``finish``) waits until every image is on disk.
        """
        rel = f"screens/{name}.png"
        masked, _ = self.redaction.image(rgb)
        # Frames are read-only; anything else is copied so a later change cannot reach the file.
        pixels = masked if masked is not rgb or not rgb.flags.writeable else rgb.copy()
        self._writer.put(self.path / rel, pixels)
        return rel

    def flush(self) -> int:
        """Wait for queued images; returns how many could not be written (each is logged)."""
        return self._writer.flush()

    def incident(self, data: dict[str, Any]) -> None:
        """Append a safety incident (a refused or denied action) to ``incidents.jsonl``."""
        data = self.redaction.data(data)
        stamped = {"time": dt.datetime.now().astimezone().isoformat(timespec="seconds"), **data}
        line = json.dumps(stamped, ensure_ascii=False) + "\n"
        _private_write(self.path / "incidents.jsonl", line.encode(), append=True)
        verdict = data.get("verdict", "")
        log.log(logging.INFO if verdict == "approved" else logging.WARNING, "safety: %s %s: %s",
                verdict, data.get("category", ""), data.get("reason", ""))

    def write_lines(self, name: str, lines: list[str]) -> None:
        """Write a JSON-lines (or text) file of the run, privately."""
        text = "".join(self.redaction.text(line) + "\n" for line in lines)
        _private_write(self.path / name, text.encode())

    def append(self, step: StepRecord) -> None:
        """Append one step to the trajectory and flush it to disk."""
        line = json.dumps(self.redaction.data(step.to_json()), ensure_ascii=False) + "\n"
        try:
            _private_write(self.trajectory, line.encode(), append=True)
        except OSError as exc:  # disk full, directory gone: the caller must stop acting
            raise RunDirError(f"cannot append to {self.trajectory}: {exc.strerror or exc}"
                              ) from exc

    def finish(self, result: RunResult) -> None:
        """Write the run's outcome next to its header, once every screenshot is written."""
        self.finish_task({"status": result.status.value, "message": result.message,
                          "steps": len(result.steps), "answer": result.answer})

    def finish_task(self, data: dict[str, Any]) -> None:
        """Write a task file's outcome next to its header, once every screenshot is written."""
        lost = self.flush()
        if lost:
            data = {**data, "screenshots_lost": lost}
        if masked := self.redaction.masked_images:
            data = {**data, "images_with_secrets_masked": masked}
        self._json("result.json", data)

    def _json(self, name: str, data: dict[str, Any]) -> None:
        text = json.dumps(self.redaction.data(data), indent=2)
        _private_write(self.path / name, (text + "\n").encode())


class _ImageWriter:
    """One thread that encodes queued images to private PNG files, in order."""

    def __init__(self, depth: int = 8) -> None:
        # A bounded queue: if the disk cannot keep up, the agent waits rather than piling up
        # full-resolution frames in memory.
        self._queue: queue.Queue[tuple[Path, np.ndarray]] = queue.Queue(maxsize=depth)
        self._failed = 0
        self._thread: threading.Thread | None = None

    def put(self, path: Path, rgb: np.ndarray) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="deskpilot-png",
                                            daemon=True)
            self._thread.start()
        self._queue.put((path, rgb))

    def flush(self) -> int:
        if self._thread is not None:
            self._queue.join()
        return self._failed

    def _run(self) -> None:
        while True:
            path, rgb = self._queue.get()
            try:
                _write_png(path, rgb)
            except (OSError, ValueError) as exc:
                self._failed += 1
                log.warning("screenshot not saved: %s", exc)
            finally:
                self._queue.task_done()


def _write_png(path: Path, rgb: np.ndarray) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        # Level 1: the screenshot is evidence, not an archive; fast beats small here.
        Image.fromarray(rgb).save(fh, format="PNG", compress_level=1)
