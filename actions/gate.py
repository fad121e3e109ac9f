"""The gate every action passes before it reaches the input device: policy, person, record.

The policy says what is out of scope (refused outright) and what is sensitive (allowed only by
the person, out of band, or by the task file's ``allow`` list). Approval never comes from the
model or from anything on the screen. Every refusal and denial is written to the run's
``incidents.jsonl`` before the agent goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from deskpilot.actions.approval import Approver
from deskpilot.actions.categories import REFUSAL_CATEGORIES
from deskpilot.actions.parse import ActionError
from deskpilot.actions.policy import Concern, KnownText, Policy
from deskpilot.actions.redaction import NO_SECRETS, Redaction
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import AnyAction, Hold, Key, Type, summarize
from deskpilot.grounding.capture import Frame

log = logging.getLogger(__name__)


class ActionDenied(ActionError):
    """The gate stopped an action; the model is told why and may choose another."""

    def __init__(self, message: str, action: AnyAction) -> None:
        super().__init__(message)
        self.action = action


class IncidentLog(Protocol):
    """Where the gate writes what it refused, denied or let through after asking (a run's
    directory: ``incidents.jsonl``)."""

    def incident(self, data: dict[str, Any]) -> None:
        """Record one incident: verdict, category, reason and the action's summary."""
        ...


@dataclass
class Gate:
    """Reviews one resolved action; ``check`` returns why it must not run, or None."""

    policy: Policy
    approver: Approver
    record: IncidentLog | None = None  # None: incidents are only logged
    secrets: Redaction = NO_SECRETS  # values never written to an incident

    def check(self, resolved: Resolved, frame: Frame | None,
              known: KnownText | None = None) -> Concern | None:
        """None when the action may run now; otherwise the concern that stopped it.

        ``known`` is the text the step already read where it clicks (it is not read again).
        """
        summary = self.secrets.text(summarize(resolved.action))
        review = self.policy.review(resolved, frame, known)
        if review.refusals:
            return self._incident(review.refusals[0], summary, "refused")
        focus = self.policy.focus_token()
        for concern in review.approvals:
            if not self.approver.approve(concern, summary):
                return self._incident(concern, summary, "denied")
            self._incident(concern, summary, "approved")
        # The person may have taken a while: keys go only where it was decided they go.
        if isinstance(resolved.action, Type | Key | Hold) or review.approvals:
            moved = self.policy.check_focus(focus)
            if moved is not None:
                return self._incident(moved, summary, "refused")
        self.policy.note_sent(resolved, focus)
        return None

    def _incident(self, concern: Concern, summary: str, verdict: str) -> Concern:
        if self.record is not None:
            self.record.incident({"verdict": verdict, "category": concern.category.value,
                                  "reason": concern.reason, "action": summary})
        else:
            log.warning("safety %s: %s (%s)", verdict, concern.reason, summary)
        return concern


def describe(concern: Concern) -> str:
    """One line for the model and the records."""
    if concern.category in REFUSAL_CATEGORIES:
        return f"refused ({concern.category.value}): {concern.reason}"
    # Only the person can permit it: in the task file, or on the command line.
    name = concern.category.value
    return (f"not approved ({name}): {concern.reason}; to permit it without asking, a task "
            f"file lists it (allow: [{name}]), a task in words takes --allow {name}")

