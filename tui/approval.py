"""The approval modal, and the approver that puts questions to it from the agent's thread."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from deskpilot.actions.policy import Concern
from deskpilot.actions.text import printable

if TYPE_CHECKING:
    from textual.app import App

    from deskpilot.agent.supervise import Controls

log = logging.getLogger(__name__)

_WAKE_S = 0.2  # how often a waiting approver looks at the stop switch


class ApprovalScreen(ModalScreen[bool]):
    """Asks once whether an action may run. Deny is focused, so Enter alone denies."""

    BINDINGS = [  # noqa: RUF012 - Textual reads this class attribute
        Binding("y", "answer(True)", "Allow once"),
        Binding("n,escape", "answer(False)", "Deny"),
        Binding("x", "app.stop", "Stop the run"),
    ]
    AUTO_FOCUS = "#deny"

    def __init__(self, summary: str, why: str, reason: str) -> None:
        super().__init__()
        self.summary, self.why, self.reason = summary, why, reason

    def compose(self) -> ComposeResult:
        """The question, why it is asked, and the two answers."""
        with Vertical(id="dialog"):
            yield Label("The agent wants to:", id="ask")
            yield Label(escape(printable(self.summary, one_line=True)), id="summary")
            yield Label(f"[b]{escape(self.why)}[/b]: "
                        f"{escape(printable(self.reason, one_line=True))}",
                        id="reason")
            with Horizontal(id="buttons"):
                yield Button("Allow once (y)", id="allow", variant="warning")
                yield Button("Deny (n)", id="deny", variant="primary")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "allow")

    def action_answer(self, allow: bool) -> None:
        """A key answered."""
        self.dismiss(allow)


class ModalApprover:
    """An :class:`~actions.approval.Approver` (and approve-each asker) backed by the modal.

    It is called from the agent's thread and blocks it until the person answers in the
    interface; a stop request, or an interface that has gone, answers no.
    """

    def __init__(self, app: App[Any], controls: Controls) -> None:
        self._app = app
        self._controls = controls

    def approve(self, concern: Concern, summary: str) -> bool:
        """The safety policy's question about a sensitive action."""
        return self.ask(summary, why=concern.category.value, reason=concern.reason)

    def ask(self, summary: str, *, why: str = "approve each action",
            reason: str = "you asked to approve every action") -> bool:
        """Show the modal and wait for the answer."""
        answered = threading.Event()
        answers: list[bool] = []

        def done(allow: bool | None) -> None:
            answers.append(bool(allow))
            answered.set()

        try:
            self._app.call_from_thread(self._app.push_screen,
                                       ApprovalScreen(summary, why, reason), done)
        except RuntimeError as exc:  # the interface is not running any more
            log.warning("no interface to ask (%s): denied", exc)
            return False
        while not answered.wait(_WAKE_S):
            if self._controls.stopping():
                return False
        allowed = answers[0]
        log.info("person %s: %s", "allowed" if allowed else "denied", summary)
        return allowed
