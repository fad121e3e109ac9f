"""A process that performs one long action on the real display, for the signal tests.

``python -m tests.helpers.input_child ACTION MODE`` with ACTION one of ``drag``, ``hold``,
``type`` and MODE ``guarded`` (inside
:func:`deskpilot.agent.cli.signals.terminate_as_interrupt`) or ``bare``.
It prints ``ready`` once the action is under way (the drag's button is down, the hold's shift
is down, the first chunk is typed), then keeps the action going for several seconds so the
parent can signal it mid-action. On an interrupt it prints ``interrupted`` after the executor
has released everything, and exits 130 like a shell-started program stopped by Ctrl+C.
"""

from __future__ import annotations

import contextlib
import faulthandler
import signal
import sys
import time
from collections.abc import Callable

from deskpilot.actions.executor import PyAutoGuiDevice, execute
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import Drag, Hold, Type
from deskpilot.agent.cli.signals import terminate_as_interrupt
from deskpilot.grounding.geometry import Point

BOX = (0.4, 0.4, 0.6, 0.6)
# 500 characters with capitals and shifted symbols, so shift goes down and up all the time.
TEXT = ("Hello World, Type Me: ABC def? " * 17)[:500]
# How long the action keeps going after "ready": the parent has that long to signal it.
DRAG_STEP_S = 1.0
HOLD_PRESS_S = 0.25
TYPE_CHUNK = 5
TYPE_CHUNK_S = 0.02


class _Ready:
    """Prints ``ready`` once, the first time it is called."""

    def __init__(self) -> None:
        self.said = False

    def __call__(self) -> None:
        if not self.said:
            self.said = True
            print("ready", flush=True)


def _slow_sleep(ready: _Ready, seconds: float) -> Callable[[float], None]:
    def sleep(_: float) -> None:
        ready()
        time.sleep(seconds)

    return sleep


def _pacer(ready: _Ready, seconds: float) -> Callable[[], bool]:
    def should_stop() -> bool:
        ready()
        time.sleep(seconds)
        return False

    return should_stop


def run(action: str) -> None:
    """Perform the long action on the display in $DISPLAY."""
    device = PyAutoGuiDevice()
    ready = _Ready()
    if action == "drag":
        # The executor sleeps between the press and each step of the path: the injected sleep
        # makes the drag last about 9 s with the left button down all along.
        resolved = Resolved(Drag(action="drag", box=BOX, to_box=BOX),
                            points=(Point(300, 300), Point(500, 400)))
        execute(resolved, device, sleep=_slow_sleep(ready, DRAG_STEP_S))
    elif action == "hold":
        # should_stop is polled between presses, with shift held: 20 presses take about 5 s.
        resolved = Resolved(Hold(action="hold", hold="shift", keys="a", presses=20),
                            keys=("a",), hold=("shift",))
        execute(resolved, device, should_stop=_pacer(ready, HOLD_PRESS_S))
    elif action == "type":
        # should_stop is polled between chunks: 100 chunks of 5 characters, a few seconds.
        execute(Resolved(Type(action="type", text=TEXT)), device, type_chunk=TYPE_CHUNK,
                should_stop=_pacer(ready, TYPE_CHUNK_S))
    else:
        raise SystemExit(f"unknown action {action!r}")
    print("finished", flush=True)


def main(argv: list[str]) -> int:
    """Run the action, guarded or bare; exit 130 after an interrupt, 0 when it finished."""
    action, mode = argv
    # A child that hangs can be asked where: the test sends SIGUSR1 before it gives up.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # A parent that ignores SIGINT would hand that on; the test wants Python's own handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    guard = terminate_as_interrupt() if mode == "guarded" else contextlib.nullcontext()
    try:
        with guard:
            run(action)
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc!r}", flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
