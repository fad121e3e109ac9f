"""The real collaborators of task runs: a display, its screen and input, OCR, the window probe
and the accessibility tree (when the display's session bus has one).

The command line's task runs, :class:`deskpilot.Desktop` and the pytest plugin all open them
here, so each face runs steps on the same machinery.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deskpilot.actions.approval import Approver, DenyAll
from deskpilot.agent.clock import SystemClock
from deskpilot.agent.tasks.cache import CacheMode
from deskpilot.agent.tasks.kit import ModelAccess
from deskpilot.agent.tasks.run import Services


@dataclass(frozen=True, slots=True)
class Place:
    """Where task runs happen and what they keep: the display, the cache, the run folders."""

    new_display: bool  # start a private Xvfb (else use $DISPLAY)
    screen_size: tuple[int, int]  # of a private display
    runs_root: Path
    cache: CacheMode = CacheMode.READ_WRITE
    cache_dir: Path | None = None  # None: deskpilot-cache/ next to each task file
    update_baselines: bool = False
    monitor: int = 1
    approver: Approver = field(default_factory=DenyAll)


@contextmanager
def live_services(place: Place, model: ModelAccess) -> Iterator[tuple[Services, bool]]:
    """Yield the services on the display ``place`` names, and whether a private one started.

    The model is closed on the way out. Raises DisplayError when no display can be had, and
    CaptureError or ValueError when the screen cannot be read.
    """
    from deskpilot.actions.executor import PyAutoGuiDevice
    from deskpilot.grounding.a11y import open_tree
    from deskpilot.grounding.capture import MssScreen
    from deskpilot.grounding.ocr import RapidOcrReader
    from deskpilot.grounding.windows import open_window_probe
    from deskpilot.grounding.xvfb import run_display

    try:
        with run_display(new=place.new_display, size=place.screen_size) as (display, started):
            screen = MssScreen(monitor=place.monitor)
            try:
                screen.geometry()
                windows = open_window_probe(display)
                tree = open_tree()
                try:
                    yield Services(
                        screen=screen, device=PyAutoGuiDevice(display), reader=RapidOcrReader(),
                        cache_mode=place.cache, cache_dir=place.cache_dir, model=model,
                        clock=SystemClock(), display=display, runs_root=place.runs_root,
                        update_baselines=place.update_baselines, approver=place.approver,
                        windows=windows, a11y=tree), started
                finally:
                    if tree is not None:
                        tree.close()
                    if windows is not None:
                        windows.close()
            finally:
                screen.close()
    finally:
        model.close()
