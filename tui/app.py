"""The supervision app: watch the agent, steer it, stop it.

The agent runs in a worker thread (``job``) and reports through messages; the interface only
flips switches on :class:`~agent.supervise.Controls`, so it never waits on the model. The step
records it shows are the ones the trajectory file gets: there is no second account of a run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Collapsible, DataTable, Footer, Input, Static

from deskpilot.actions.text import printable
from deskpilot.agent.records import Outcome, RunResult, StepRecord
from deskpilot.agent.supervise import Controls, Points
from deskpilot.models.prompt import THINK_CLOSE, THINK_OPEN
from deskpilot.tui.approval import ApprovalScreen, ModalApprover
from deskpilot.tui.imageview import Marks, ScreenView
from deskpilot.tui.messages import (
    Decided,
    Loaded,
    Observed,
    RunEnded,
    StateChanged,
    StepDone,
    TextChunk,
)

log = logging.getLogger(__name__)

KEPT_TEXT_STEPS = 40  # older model text leaves the pane (the trajectory keeps all of it)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What the header shows about the run."""

    task: str
    model: str
    mode: str
    screen: tuple[int, int, int, int]  # left, top, width, height of the watched monitor
    run_dir: str = ""
    kill_key: str | None = None  # a label like "Ctrl+Alt+K"; None when there is no kill switch
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Session:
    """What the job gets from the interface."""

    controls: Controls
    approver: ModalApprover
    on_step: Callable[[StepRecord], object]
    on_loaded: Callable[[str], object] = field(default=lambda _name: None)


Job = Callable[[Session], RunResult]


class SupervisorApp(App[RunResult | None]):
    """Live view, step log, model text and controls for one run."""

    CSS_PATH = "app.tcss"
    TITLE = "deskpilot"
    # The key bar shows these in order and cuts off what does not fit: the keys that stop and
    # quit come first, so they show even at 80 columns.
    BINDINGS = [  # noqa: RUF012 - Textual reads this class attribute
        Binding("x", "stop", "Stop"),
        Binding("q", "quit_app", "Quit"),
        Binding("space", "toggle_pause", "Pause/resume"),
        Binding("s", "toggle_step_once", "Step-once"),
        Binding("n", "next_action", "Next"),
        Binding("a", "toggle_approve_each", "Approve each"),
        Binding("h", "hint", "Hint"),
        Binding("z", "toggle_zoom", "Zoom", show=False),
        Binding("ctrl+c", "stop", "Stop", show=False, priority=True),
    ]
    ENABLE_COMMAND_PALETTE = False  # nothing to find there; its key would take key-bar room
    NARROW = 110  # below this many columns the live view gives the step log half the width

    def __init__(self, info: RunInfo, job: Job, *, controls: Controls | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.info = info
        self._job = job
        self._clock = clock
        self.controls = controls or Controls()
        self.controls.on_observed = lambda i, rgb: self.post_message(Observed(i, rgb))
        self.controls.on_text = lambda text: self.post_message(TextChunk(text))
        self.controls.on_state = lambda state: self.post_message(StateChanged(state))
        self.controls.on_decided = lambda i, action, points: self.post_message(
            Decided(i, action, points))
        self.approver = ModalApprover(self, self.controls)
        self.controls.ask = self.approver.ask
        self.result: RunResult | None = None
        self.error: str | None = None  # why the job ended without a result
        self.steps: list[StepRecord] = []
        self._started = clock()
        self._ended_at: float | None = None
        self._live_text: list[str] = []
        self._quit_when_done = False
        # The widgets are kept: a modal on top must not hide them from the message handlers.
        self._header = Static(id="header")
        self._view = ScreenView(id="screen")
        self._table: DataTable[str | Text] = DataTable(id="steps", cursor_type="row",
                                                       zebra_stripes=True)
        self._live = Static("", id="live")
        self._pane = VerticalScroll(self._live, id="text")
        self._hint = Input(placeholder="hint for the agent's next step (Enter sends, Esc "
                                       "cancels)", id="hint", max_length=500)
        self._status = Static(id="status")
        self._columns: tuple[tuple[str, int], ...] = ()

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Header, live view beside the step log and the model text, status, footer."""
        yield self._header
        with Horizontal(id="main"):
            yield self._view
            with Vertical(id="side"):
                yield self._table
                yield self._pane
        yield self._hint
        yield self._status
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        """Fill the header, set up the table, start the agent."""
        self.set_class(self.size.width < self.NARROW, "-narrow")
        self._table.focus()
        self._fit_table(0)
        self.call_after_refresh(self._refit_table)
        self._show_header()
        self._show_status(self.controls.state())
        self.set_interval(1.0, self._show_header)
        self._run_job()

    def on_unmount(self) -> None:
        """However the interface goes away, the agent must not go on unwatched."""
        if self.result is None:
            self.controls.stop("stopped: the interface closed")

    # -- the agent's thread ------------------------------------------------------------------

    @work(thread=True, exclusive=True, name="agent", exit_on_error=False)
    def _run_job(self) -> None:
        session = Session(self.controls, self.approver,
                          on_step=lambda step: self.post_message(StepDone(step)),
                          on_loaded=lambda name: self.post_message(Loaded(name)))
        try:
            result = self._job(session)
        except Exception as exc:  # shown in the interface; the traceback goes to the log
            log.exception("the run failed")
            self.post_message(RunEnded(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(RunEnded(result))

    # -- messages from the agent -------------------------------------------------------------
    # A message can arrive while the interface is being taken down; then there is nothing to draw.

    def _gone(self) -> bool:
        return not self.is_running or not self._status.is_attached

    @on(Observed)
    def _observed(self, message: Observed) -> None:
        if self._gone():
            return
        self._view.show(message.rgb)
        self._live_text.clear()
        self._live.update(Text(f"step {message.index}: thinking…",
                                                    style="dim"))

    @on(TextChunk)
    def _text(self, message: TextChunk) -> None:
        if self._gone():
            return
        self._live_text.append(message.text)
        self._live.update(live_text("".join(self._live_text)))
        self._pane.scroll_end(animate=False)

    @on(Decided)
    def _decided(self, message: Decided) -> None:
        if self._gone():
            return
        self._view.mark(self._marks(message.action, message.points))

    @on(StepDone)
    def _step(self, message: StepDone) -> None:
        if self._gone():
            return
        step = message.step
        self.steps.append(step)
        self._view.mark(self._marks(step.action, step.points))
        table = self._table
        table.add_row(*step_row(step, self._columns), key=str(step.index))
        table.move_cursor(row=table.row_count - 1)
        self._fold_text(step)
        self._show_header()

    @on(StateChanged)
    def _state(self, message: StateChanged) -> None:
        if self._gone():
            return
        # A switch flipped after the run ended (s, a) changes no run: it stays "ended".
        self._show_status("ended" if self._ended_at is not None else message.state)

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if self._gone():
            return
        self.info = replace(self.info, model=message.model)
        self._show_header()

    @on(RunEnded)
    def _ended(self, message: RunEnded) -> None:
        self.result, self.error = message.result, message.error
        self._ended_at = self._clock()
        if self._gone():
            return
        if isinstance(self.screen, ApprovalScreen):
            self.screen.dismiss(False)
        if message.result is None:
            error = printable(message.error or "unknown error")
            text = f"[b red]the run failed[/]: {escape(error)}"
        else:
            r = message.result
            colour = "green" if r.status.ok else "yellow"
            text = f"[b {colour}]{r.status.value}[/]: {escape(printable(r.brief(300)))}"
        self._live.update(Text.from_markup(text + "  (q quits)"))
        self._pane.scroll_end(animate=False)
        self._show_status("ended")
        self._show_header()
        if self._quit_when_done:
            self.exit(self.result)

    # -- the person's controls ---------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        """Pause or resume (resuming also hands control back after a takeover)."""
        if self.result is None:
            self.controls.toggle_pause()

    def action_toggle_step_once(self) -> None:
        """Each action waits for n."""
        if self._ended_at is not None:
            self.notify("the run has ended")
            return
        self.controls.set_step_once(not self.controls.step_once)
        on = self.controls.step_once
        self.notify(f"step-once {'on: press n for each action' if on else 'off'}")

    def action_next_action(self) -> None:
        """Let one action through (step-once mode)."""
        self.controls.step()

    def action_toggle_approve_each(self) -> None:
        """Every action asks first."""
        if self._ended_at is not None:
            self.notify("the run has ended")
            return
        self.controls.set_approve_each(not self.controls.approve_each)
        self.notify(f"approve each action: {'on' if self.controls.approve_each else 'off'}")

    def action_hint(self) -> None:
        """Open the hint line."""
        box = self._hint
        box.add_class("open")
        box.focus()

    @on(Input.Submitted, "#hint")
    def _hint_sent(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.controls.add_hint(event.value)
            self.notify(f"hint for the next step: {event.value.strip()}")
        self._close_hint()

    def key_escape(self) -> None:
        """Esc closes the hint line without sending it."""
        self._close_hint()

    def _close_hint(self) -> None:
        box = self._hint
        box.value = ""
        box.remove_class("open")
        self._table.focus()

    def action_stop(self) -> None:
        """Stop the run (what is pressed is released); the interface stays to read."""
        if self.result is None:
            self.controls.stop()
        if isinstance(self.screen, ApprovalScreen):
            self.screen.dismiss(False)

    def action_quit_app(self) -> None:
        """Quit; a running agent is stopped first."""
        if self.result is not None or not self._job_running():
            self.exit(self.result)
            return
        self._quit_when_done = True
        self.controls.stop("stopped by the person (quit)")

    def _job_running(self) -> bool:
        return any(w.name == "agent" and not w.is_finished for w in self.workers)

    # -- drawing -----------------------------------------------------------------------------

    def _show_header(self) -> None:
        end = self._ended_at if self._ended_at is not None else self._clock()
        seconds = int(max(0.0, end - self._started))
        i = self.info
        header = (f"[b]{escape(printable(i.task))}[/b]\n"
                  f"model [b]{escape(i.model)}[/b] · mode [b]{i.mode}[/b] · step "
                  f"[b]{len(self.steps)}[/b] · {seconds // 60}:{seconds % 60:02d}"
                  + (" · [b yellow]DRY RUN[/]" if i.dry_run else "")
                  + (f" · {escape(i.run_dir)}" if i.run_dir else ""))
        self._header.update(Text.from_markup(header))

    def _show_status(self, state: str) -> None:
        c = self.controls
        modes = [m for m, on_ in (("step-once", c.step_once), ("approve-each", c.approve_each))
                 if on_]
        kill = (f"kill switch [b]{escape(self.info.kill_key)}[/b] (works anywhere)"
                if self.info.kill_key else "no kill switch: x or Ctrl+C here stops")
        colour = {"running": "green", "ended": "blue"}.get(state, "yellow")
        line = f"[b {colour}]{escape(printable(state))}[/]"
        if modes:
            line += " · " + ", ".join(modes)
        self._status.update(Text.from_markup(f"{line} · {kill}"))

    def _marks(self, action: dict[str, Any] | None, points: Points) -> Marks:
        """Where an action lands, in fractions of the screenshot."""
        left, top, width, height = self.info.screen
        boxes = [tuple(float(v) for v in action[key]) for key in ("box", "to_box")
                 if action is not None and isinstance(action.get(key), list | tuple)]
        return Marks(boxes=tuple(boxes),  # type: ignore[arg-type]
                     points=tuple(((x - left) / width, (y - top) / height) for x, y in points))

    def on_resize(self) -> None:
        """Narrow terminals get a narrower live view; the step log shows what fits."""
        self.set_class(self.size.width < self.NARROW, "-narrow")
        self.call_after_refresh(self._refit_table)

    def _refit_table(self) -> None:
        self._fit_table(self._table.size.width - 2)  # room for a scroll bar

    def _fit_table(self, width: int) -> None:
        """Show the columns that fit in ``width`` cells, most important first."""
        columns = fit_columns(width)
        if columns == self._columns:
            return
        self._columns = columns
        table = self._table
        table.clear(columns=True)
        for name, cells in columns:
            table.add_column(name, key=name, width=cells)
        for step in self.steps:
            table.add_row(*step_row(step, columns), key=str(step.index))
        if self.steps:
            table.move_cursor(row=table.row_count - 1)

    def action_toggle_zoom(self) -> None:
        """Zoom the live view on the target when it needs it, or always show the whole screen."""
        self._view.zoom = not self._view.zoom
        self.notify(f"live view: {'zooms on the target' if self._view.zoom else 'whole screen'}")

    def _fold_text(self, step: StepRecord) -> None:
        pane = self._pane
        live = self._live
        if step.reasoning:
            pane.mount(Collapsible(Static(Text(printable(step.reasoning))), collapsed=True,
                                   title=f"step {step.index}: reasoning "
                                         f"({len(step.reasoning)} chars)"), before=live)
        answer = Text(f"step {step.index} → ", style="bold")
        answer.append(printable(step.answer) or "(no answer)")
        for line in step.grounding_lines():  # the grounding call's answer under the plan
            answer.append("\n  " + printable(line), style="italic")
        pane.mount(Static(answer, classes="answer"), before=live)
        self._live_text.clear()
        live.update("")
        old = [w for w in pane.children if w is not live]
        for widget in old[:-2 * KEPT_TEXT_STEPS]:
            widget.remove()
        pane.scroll_end(animate=False)


# The step log's columns, most important first, with their widths in cells; each one takes
# two more for padding. A narrow table keeps the first ones that fit.
COLUMNS: tuple[tuple[str, int], ...] = (
    ("#", 3), ("outcome", 11), ("time", 5), ("action", 8), ("target", 14), ("at", 9),
    ("source", 6), ("model", 6), ("act", 6))
WIDE_OUTCOME = 24  # when every column fits, the outcome gets room for the reason


def fit_columns(width: int) -> tuple[tuple[str, int], ...]:
    """The columns of :data:`COLUMNS` that fit in ``width`` cells (at least the first two)."""
    chosen: list[tuple[str, int]] = []
    used = 0
    for name, cells in COLUMNS:
        if used + cells + 2 > width and len(chosen) >= 2:
            break
        chosen.append((name, cells))
        used += cells + 2
    if len(chosen) == len(COLUMNS):
        spare = min(width - used, WIDE_OUTCOME - dict(COLUMNS)["outcome"])
        chosen[1] = ("outcome", chosen[1][1] + max(0, spare))
    return tuple(chosen)


_VERDICTS = {  # outcome -> mark and colour of the outcome cell
    Outcome.EXECUTED: ("✓", "green"), Outcome.DRY_RUN: ("○", "cyan"),
    Outcome.REJECTED: ("✗", "red"), Outcome.DENIED: ("✗", "red"),
    Outcome.TAKEN_OVER: ("‖", "yellow"), Outcome.TERMINAL: ("■", "blue")}


def outcome_text(step: StepRecord) -> Text:
    """The outcome as a mark, a word and the reason, coloured so it reads at a glance."""
    mark, colour = _VERDICTS[step.outcome]
    action = str((step.action or {}).get("action", ""))
    word = {Outcome.EXECUTED: "done", Outcome.DRY_RUN: "dry run",
            Outcome.TAKEN_OVER: "taken over"}.get(step.outcome, step.outcome.value)
    if step.outcome is Outcome.TERMINAL:
        mark, colour = {"done": ("✓", "green"), "fail": ("✗", "red")}.get(action, ("?", "yellow"))
        word = action or word
    text = Text(f"{mark} {word}", style=f"bold {colour}")
    if step.error:
        text.append(f": {printable(step.error)[:60]}", style=colour)
    return text


def step_row(step: StepRecord, columns: tuple[tuple[str, int], ...]) -> tuple[str | Text, ...]:
    """One row of the step log: the cells of ``columns``, in their order."""
    action = step.action or {}
    cells: dict[str, str | Text] = {
        "#": str(step.index),
        "outcome": outcome_text(step),
        "time": f"{step.timings.total:.1f}s",
        "action": str(action.get("action", "?")),
        "target": printable(str(action.get("target", action.get("text", ""))))[:40],
        "at": " → ".join(f"{x},{y}" for x, y in step.points),
        "source": ("model" + ("+ground" if step.grounding else "")
                   + ("+zoom" if step.zoom_image_tokens else "")) if action else "—",
        "model": f"{step.timings.model:.1f}s",
        "act": f"{step.timings.act * 1e3:.0f}ms",
    }
    return tuple(cells[name] for name, _ in columns)


def live_text(raw: str) -> Text:
    """Model output as it streams: a reasoning trace dimmed, the answer in bold."""
    raw = printable(raw)
    if THINK_OPEN not in raw:
        return Text(raw, style="bold")
    trace, closed, answer = raw.partition(THINK_OPEN)[2].partition(THINK_CLOSE)
    out = Text("thinking… ", style="bold dim")
    out.append(trace.strip(), style="dim italic")
    if closed:
        out.append("\n")
        out.append(answer.strip(), style="bold")
    return out
