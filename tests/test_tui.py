"""The supervision app driven by Textual's Pilot: a scripted model, a fake screen, a recording
device. Every control is checked against what reached the device and the step records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from textual.widgets import DataTable

from deskpilot.actions.executor import RecordingDevice
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import Outcome, RunResult, Status
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.settings import ModelSettings
from deskpilot.agent.supervise import Controls
from deskpilot.agent.takeover import TakeoverWatch
from deskpilot.grounding.capture import FakeScreen
from deskpilot.models.runtime import Reply
from deskpilot.models.scripted import ScriptedRuntime
from deskpilot.tui.app import RunInfo, Session, SupervisorApp
from deskpilot.tui.approval import ApprovalScreen
from deskpilot.tui.imageview import ScreenView
from tests.helpers.fakes import JOINT_SETTINGS, FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


CLICK = '{"action": "click", "target": "the OK button", "box": [0.40, 0.60, 0.50, 0.70]}'
TYPE = '{"action": "type", "text": "hello"}'
DONE = '{"action": "done", "answer": "all set"}'
SIZE = (800, 500)


def desktop(size: tuple[int, int] = SIZE) -> np.ndarray:
    """A fixed 'desktop': a window with a title bar, a green OK and a grey Cancel button (drawn
    in proportion for any ``size``)."""
    w, h = size
    image = np.full((h, w, 3), (40, 70, 110), np.uint8)

    def box(x1: float, y1: float, x2: float, y2: float, colour: tuple[int, int, int]) -> None:
        cv2.rectangle(image, (round(x1 * w), round(y1 * h)), (round(x2 * w), round(y2 * h)),
                      colour, -1)

    box(0.15, 0.16, 0.85, 0.84, (230, 230, 230))
    box(0.15, 0.16, 0.85, 0.22, (60, 60, 160))
    box(0.40, 0.60, 0.50, 0.70, (90, 160, 90))
    if size != SIZE:  # the snapshots of SIZE predate the Cancel button
        box(0.55, 0.60, 0.65, 0.70, (170, 170, 170))
    return image


class Harness:
    """One app around a real loop; what the device got and what the model was asked."""

    def __init__(self, tmp_path: Path, replies: list[str | Reply], *,
                 controls: Controls | None = None, takeover: TakeoverWatch | None = None,
                 before_reply: Callable[[int], None] | None = None,
                 screen: np.ndarray | None = None,
                 settings: ModelSettings = JOINT_SETTINGS) -> None:
        self.device = RecordingDevice()
        self.screen = desktop() if screen is None else screen
        self.settings = settings
        self.runtime = _Runtime(replies, before_reply)
        self.controls = controls or Controls()
        self.record = RunDir(tmp_path / "runs")
        self.takeover = takeover
        info = RunInfo(task="press OK in the dialog", model="scripted", mode="direct",
                       screen=(0, 0, self.screen.shape[1], self.screen.shape[0]),
                       kill_key="Ctrl+Alt+K")
        self.app = SupervisorApp(info, self.job, controls=self.controls, clock=lambda: 100.0)

    def job(self, session: Session) -> RunResult:
        return run_agent("press OK in the dialog", runtime=self.runtime,
                         screen=FakeScreen(self.screen), device=self.device, record=self.record,
                         clock=FakeClock(), takeover=self.takeover, on_step=session.on_step,
                         supervisor=session.controls, settings=self.settings)

    def executed(self) -> list[str]:
        return [call[0] for call in self.device.calls]


class _Runtime(ScriptedRuntime):
    def __init__(self, replies: list[str | Reply], before: Callable[[int], None] | None) -> None:
        super().__init__(replies)
        self._before = before

    def complete(self, request):  # type: ignore[no-untyped-def]
        if self._before is not None:
            self._before(len(self.requests))
        return super().complete(request)


async def until(pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Let the app run until ``condition`` holds (the agent works in a thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)


def row(table, index: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A row of the step log by column label, as plain text."""
    labels = [str(c.label) for c in table.ordered_columns]
    return {label: getattr(cell, "plain", str(cell))
            for label, cell in zip(labels, table.get_row_at(index), strict=True)}


def fitted(h: Harness) -> Callable[[], bool]:
    """The step log's columns are fitted to its laid-out width."""
    return lambda: len(h.app.query_one("#steps", DataTable).ordered_columns) > 2


def asking(h: Harness) -> Callable[[], bool]:
    """The approval modal is up and drawn."""
    return lambda: isinstance(h.app.screen, ApprovalScreen) and bool(
        h.app.screen.query("#deny"))


def ended(h: Harness) -> Callable[[], bool]:
    return lambda: h.app.result is not None or h.app.error is not None


async def test_a_run_shows_steps_marks_and_folded_reasoning(tmp_path: Path) -> None:
    h = Harness(tmp_path, [Reply(answer=CLICK, reasoning="The OK button is green."), DONE])
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, ended(h))
        assert h.app.result is not None and h.app.result.status is Status.DONE
        table = h.app.query_one("#steps")
        # The columns are fitted to the table's width once it is laid out (the run may end
        # before that on a busy machine).
        await until(pilot, fitted(h))
        assert table.row_count == 2
        first = row(table, 0)
        assert (first["#"], first["action"], first["target"]) == ("1", "click", "the OK button")
        assert first["outcome"] == "✓ done" and row(table, 1)["outcome"] == "✓ done"
        marks = h.app.query_one(ScreenView).marks
        assert marks.boxes == ()  # the last step (done) points nowhere
        titles = [c.title for c in h.app.query("Collapsible")]
        assert titles == ["step 1: reasoning (23 chars)"]
        assert all(c.collapsed for c in h.app.query("Collapsible"))
    assert h.executed() == ["move", "button_down", "button_up"]
    lines = (h.record.path / "trajectory.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [1, 2]  # the same records


async def test_planner_text_and_grounder_answer_both_shown(tmp_path: Path) -> None:
    plan = '{"action": "click", "target": "the OK button", "button": "left", "clicks": 1}'
    h = Harness(tmp_path, [plan, "[0.40, 0.60, 0.50, 0.70]", DONE], settings=ModelSettings())
    async with h.app.run_test(size=(240, 40)) as pilot:  # wide: every column is shown
        await until(pilot, ended(h))
        await until(pilot, fitted(h))
        assert h.app.result is not None and h.app.result.status is Status.DONE
        table = h.app.query_one("#steps")
        row = dict(zip((str(c.label) for c in table.columns.values()), table.get_row_at(0),
                       strict=True))
        assert (row["#"], row["action"], row["target"]) == ("1", "click", "the OK button")
        assert row["source"] == "model+ground"
        shown = [str(w.render()) for w in h.app.query(".answer")]
        assert plan in shown[0]
        assert "locate 'the OK button' -> [0.40, 0.60, 0.50, 0.70]" in shown[0]
    assert h.executed() == ["move", "button_down", "button_up"]


async def test_pause_holds_the_agent_and_resume_lets_it_go(tmp_path: Path) -> None:
    controls = Controls()
    controls.pause()
    h = Harness(tmp_path, [CLICK, DONE], controls=controls)
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: controls.state() == "paused")
        await pilot.pause(0.3)
        assert h.runtime.requests == [] and h.device.calls == []
        assert "paused" in str(h.app.query_one("#status").render())
        await pilot.press("space")
        await until(pilot, ended(h))
    assert h.app.result is not None and h.app.result.status is Status.DONE
    assert h.executed() == ["move", "button_down", "button_up"]


async def test_step_once_waits_for_n_before_each_action(tmp_path: Path) -> None:
    controls = Controls()
    controls.pause()  # the scripted model is quicker than any key
    h = Harness(tmp_path, [CLICK, TYPE, DONE], controls=controls)
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: controls.state() == "paused")
        await pilot.press("s", "space")
        await until(pilot, lambda: (h.controls.state() or "").startswith("step once"))
        assert h.device.calls == []
        await pilot.press("n")
        await until(pilot, lambda: len(h.app.steps) == 1)
        await until(pilot, lambda: (h.controls.state() or "").startswith("step once"))
        assert h.executed() == ["move", "button_down", "button_up"]
        await pilot.press("s")  # off again: the rest runs on its own
        await until(pilot, ended(h))
    assert h.app.result is not None and h.app.result.status is Status.DONE
    assert h.executed() == ["move", "button_down", "button_up", "write"]


async def test_denied_in_the_modal_is_not_executed(tmp_path: Path) -> None:
    controls = Controls()
    controls.set_approve_each(True)
    h = Harness(tmp_path, [CLICK, DONE], controls=controls)
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, asking(h))
        assert "click" in str(h.app.screen.query_one("#summary").render())
        marks = h.app.query_one(ScreenView).marks  # where it would click, before the answer
        assert marks.boxes == ((0.4, 0.6, 0.5, 0.7),) and marks.points == ((360 / 800, 324 / 500),)
        await pilot.press("n")
        await until(pilot, ended(h))
    assert h.device.calls == []
    assert h.app.steps[0].outcome is Outcome.DENIED
    assert h.app.steps[0].error == "not approved by the person"
    assert "not approved by the person" in h.runtime.requests[1].prompt  # the model is told


async def test_allowed_in_the_modal_runs(tmp_path: Path) -> None:
    controls = Controls()
    controls.set_approve_each(True)
    h = Harness(tmp_path, [CLICK, DONE], controls=controls)
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, asking(h))
        await pilot.press("y")
        await until(pilot, ended(h))
    assert h.executed() == ["move", "button_down", "button_up"]


async def test_stop_ends_the_run_and_the_app_stays(tmp_path: Path) -> None:
    controls = Controls()
    controls.pause()
    h = Harness(tmp_path, [CLICK, DONE], controls=controls)
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: controls.state() == "paused")
        await pilot.press("x")
        await until(pilot, ended(h))
        assert h.app.is_running  # the person can read what happened, then q
        await pilot.press("q")
    assert h.app.result is not None and h.app.result.status is Status.INTERRUPTED
    assert h.device.calls == [] and h.runtime.requests == []


async def test_stop_while_the_modal_is_open_denies_and_ends(tmp_path: Path) -> None:
    controls = Controls()
    controls.set_approve_each(True)
    h = Harness(tmp_path, [CLICK, DONE], controls=controls)
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, asking(h))
        await pilot.press("x")
        await until(pilot, ended(h))
        assert not isinstance(h.app.screen, ApprovalScreen)
    assert h.app.result is not None and h.app.result.status is Status.INTERRUPTED
    assert h.device.calls == []


async def test_a_hint_reaches_the_next_prompt_once(tmp_path: Path) -> None:
    controls = Controls()
    controls.set_step_once(True)
    h = Harness(tmp_path, [CLICK, TYPE, DONE], controls=controls)
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: (controls.state() or "").startswith("step once"))
        await pilot.press("h")
        await pilot.press(*"use the green one")
        await pilot.press("enter")
        controls.set_step_once(False)
        await until(pilot, ended(h))
    prompts = [r.prompt for r in h.runtime.requests]
    assert "Hint from the person" not in prompts[0]
    assert "Hint from the person: use the green one" in prompts[1]
    assert "Hint from the person" not in prompts[2]


async def test_takeover_pauses_until_handed_back_and_is_recorded(tmp_path: Path) -> None:
    watch = TakeoverWatch()  # not started: the test feeds it the listener's lines

    def person(call: int) -> None:
        if call == 0:  # while the model thinks about step 1, the person clicks somewhere
            watch.feed(json.dumps({"kind": "move", "x": 10, "y": 20}))
            for kind in ("press", "release"):
                watch.feed(json.dumps({"kind": kind, "x": 10, "y": 20, "button": "left"}))

    h = Harness(tmp_path, [CLICK, DONE], takeover=watch, before_reply=person)
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: (h.controls.state() or "").startswith("you have control"))
        assert h.device.calls == []
        await pilot.press("space")
        await until(pilot, ended(h))
    first = h.app.steps[0]
    assert first.outcome is Outcome.TAKEN_OVER and h.device.calls == []
    assert "click(left, 10, 20)" in (first.error or "")
    assert "was not carried out" in h.runtime.requests[1].prompt
    assert h.app.result is not None and h.app.result.status is Status.DONE


async def test_kill_switch_stops_mid_generation(tmp_path: Path) -> None:
    long = Reply(answer=CLICK, reasoning=" ".join(["thinking"] * 50))
    h = Harness(tmp_path, [long, DONE])
    h.app.controls.on_text = lambda text: h.controls.stop("stopped by the kill switch")
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, ended(h))
    assert h.app.result is not None and h.app.result.status is Status.INTERRUPTED
    assert h.app.result.message == "stopped by the kill switch"
    assert h.device.calls == []


CLICK_2 = '{"action": "click", "target": "Cancel", "box": [0.55, 0.60, 0.65, 0.70]}'


@pytest.mark.parametrize("approve_each", [False, True])
def test_snapshots(snap_compare, tmp_path: Path, approve_each: bool) -> None:  # type: ignore[no-untyped-def]
    """The main screen in step-once mode (step 1 done, step 2's click marked and waiting for
    n), and the approval modal over it."""
    controls = Controls()
    controls.set_step_once(True)
    h = Harness(tmp_path, [Reply(answer=CLICK, reasoning="The green button says OK."),
                           Reply(answer=CLICK_2, reasoning="Now the other one.")],
                controls=controls)

    async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
        waiting = lambda: (controls.state() or "").startswith("step once")  # noqa: E731
        await until(pilot, waiting)
        await pilot.press("n")
        await until(pilot, lambda: len(h.app.steps) == 1)
        await until(pilot, waiting)
        await until(pilot, fitted(h))
        if approve_each:
            controls.set_approve_each(True)
            await pilot.press("n")
            await until(pilot, asking(h))
        await pilot.pause(0.3)

    assert snap_compare(h.app, terminal_size=(120, 36), run_before=settle)


def test_streamed_text_dims_the_trace_and_shows_the_answer_apart() -> None:
    from deskpilot.tui.app import live_text

    assert live_text('{"action"').plain == '{"action"'
    assert live_text("<think>the OK ").plain == "thinking… the OK"
    done = live_text('<think>the OK button</think>{"action": "done"}')
    assert done.plain == 'thinking… the OK button\n{"action": "done"}'
    assert any("dim" in str(span.style) for span in done.spans)


def _step_once_settle(h: Harness, controls: Controls):  # type: ignore[no-untyped-def]
    """Step 1 done, step 2's click decided and waiting for n."""
    async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
        waiting = lambda: (controls.state() or "").startswith("step once")  # noqa: E731
        await until(pilot, waiting)
        await pilot.press("n")
        await until(pilot, lambda: len(h.app.steps) == 1)
        await until(pilot, waiting)
        await until(pilot, fitted(h))
        await pilot.pause(0.3)
    return settle


def _full_hd(tmp_path: Path) -> tuple[Harness, Controls]:
    controls = Controls()
    controls.set_step_once(True)
    h = Harness(tmp_path, [Reply(answer=CLICK, reasoning="The green button says OK."),
                           Reply(answer=CLICK_2, reasoning="Now the other one.")],
                controls=controls, screen=desktop((1920, 1080)))
    return h, controls


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshots_of_a_1080p_screen_at_two_terminal_sizes(  # type: ignore[no-untyped-def]
        snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    """The smallest usual terminal and a large one, watching a 1920x1080 screen."""
    h, controls = _full_hd(tmp_path)
    assert snap_compare(h.app, terminal_size=size, run_before=_step_once_settle(h, controls))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
async def test_stop_quit_outcome_and_zoom_are_readable(tmp_path: Path,
                                                       size: tuple[int, int]) -> None:
    from tests.helpers.svgtext import svg_lines

    h, controls = _full_hd(tmp_path)
    async with h.app.run_test(size=size) as pilot:
        await _step_once_settle(h, controls)(pilot)
        lines = svg_lines(h.app.export_screenshot())
        assert len(lines) == size[1]
        keys = lines[-1]
        assert "x Stop" in keys and "q Quit" in keys  # always, first in the key bar
        assert keys.index("x Stop") < keys.index("space Pause")
        table = h.app.query_one("#steps")
        labels = [str(c.label) for c in table.ordered_columns]
        assert labels[:4] == ["#", "outcome", "time", "action"]
        assert ("target" in labels) == (size[0] >= 160)  # the rest on wider terminals
        assert any("✓ done" in line for line in lines)
        # A 1080p screen in a few dozen columns would be a blob: the view zooms on the target.
        view = h.app.query_one(ScreenView)
        assert view.zoomed is not None
        x1, y1, x2, y2 = view.zoomed
        assert x1 <= 0.55 and x2 >= 0.65 and y1 <= 0.60 and y2 >= 0.70  # the Cancel box
        assert any("zoom" in line and "z: whole screen" in line for line in lines)
        await pilot.press("z")
        await pilot.pause(0.1)
        assert view.zoomed is None and not any(
            "z: whole screen" in line for line in svg_lines(h.app.export_screenshot()))
        controls.stop()


def test_zoom_region_only_when_the_whole_screen_is_too_coarse() -> None:
    from deskpilot.tui.imageview import Marks, within, zoom_region

    target = Marks(boxes=((0.55, 0.60, 0.65, 0.70),), points=((0.6, 0.65),))
    assert zoom_region(1920, 1080, 40, 20, Marks()) is None  # nothing to zoom on
    assert zoom_region(800, 500, 120, 40, target) is None     # ~7 pixels a cell: readable
    region = zoom_region(1920, 1080, 40, 20, target)
    assert region is not None
    x1, y1, x2, y2 = region
    assert 0 <= x1 <= 0.55 and 0.65 <= x2 <= 1 and 0 <= y1 <= 0.60 and 0.70 <= y2 <= 1
    # Shaped like the cells (40 wide, 40 pixels tall): square in screen pixels.
    assert abs((x2 - x1) * 1920 - (y2 - y1) * 1080) < 2
    inside = within(target, region)
    (bx1, by1, bx2, by2), = inside.boxes
    assert 0 < bx1 < bx2 < 1 and 0 < by1 < by2 < 1
    # At the screen's edge the region stays inside the picture.
    corner = zoom_region(1920, 1080, 40, 20, Marks(points=((0.999, 0.999),)))
    assert corner is not None and corner[2] == pytest.approx(1) and corner[3] == pytest.approx(1)


def test_step_log_columns_by_importance() -> None:
    from deskpilot.tui.app import COLUMNS, fit_columns

    names = lambda width: [n for n, _ in fit_columns(width)]  # noqa: E731
    assert names(0) == ["#", "outcome"]
    assert names(36) == ["#", "outcome", "time", "action"]
    assert names(200) == [n for n, _ in COLUMNS]
    widths = [sum(c + 2 for _, c in fit_columns(w)) for w in range(20, 120)]
    assert all(w <= limit for w, limit in zip(widths, range(20, 120), strict=True))


async def test_switches_pressed_after_the_run_ended_leave_it_ended(tmp_path: Path) -> None:
    h = Harness(tmp_path, [DONE])
    async with h.app.run_test(size=(140, 40)) as pilot:
        await until(pilot, ended(h))
        await pilot.pause(0.1)
        for key in ("s", "a", "s"):
            await pilot.press(key)
            await pilot.pause(0.1)
        status = str(h.app.query_one("#status").render())
        assert status.startswith("ended"), status
        assert "running" not in status
