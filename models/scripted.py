"""A runtime that replays recorded answers: for tests, demos and replays of earlier runs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from deskpilot.models.prompt import THINK_CLOSE, THINK_OPEN
from deskpilot.models.runtime import Reply, Request, RuntimeFailure

log = logging.getLogger(__name__)


class ScriptedRuntime:
    """Answers each request with the next recorded reply, and remembers the requests."""

    def __init__(self, replies: Iterable[str | Reply], *, name: str = "scripted") -> None:
        self._replies = [r if isinstance(r, Reply) else Reply(answer=r) for r in replies]
        self._name = name
        self.requests: list[Request] = []

    @classmethod
    def from_jsonl(cls, path: Path) -> ScriptedRuntime:
        """Load replies from a JSON-lines file: one object with ``answer`` (and optionally
        ``reasoning``) per line, or one trajectory record with ``reply`` (and the answers of
        its ``grounding`` calls, replayed after it) per line."""
        replies: list[Reply] = []
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    data = record.get("reply", record)
                    replies.append(Reply(answer=str(data["answer"]),
                                         reasoning=str(data.get("reasoning", ""))))
                    # A planner step's grounding calls answered after it, in order.
                    replies.extend(Reply(answer=str(call["answer"]))
                                   for call in record.get("grounding", ()))
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                    raise ValueError(f"{path}:{number}: not a recorded reply ({exc})") from None
        return cls(replies, name=f"script:{path.name}")

    @property
    def name(self) -> str:
        """The script's label."""
        return self._name

    @property
    def remaining(self) -> int:
        """How many recorded replies are left."""
        return len(self._replies) - len(self.requests)

    def complete(self, request: Request) -> Reply:
        """Return the next recorded reply; fail when the script has run out."""
        index = len(self.requests)
        self.requests.append(request)
        if index >= len(self._replies):
            raise RuntimeFailure(f"{self._name}: script exhausted after {index} replies")
        reply = self._replies[index]
        if request.on_text is not None:  # streamed in words, the trace first, like a model
            trace = f"{THINK_OPEN}{reply.reasoning}{THINK_CLOSE}" if reply.reasoning else ""
            for piece in re.findall(r"\S+\s*", trace + reply.answer):
                request.on_text(piece)
        log.debug("scripted reply %d: %s", index, reply.answer)
        return reply

    def close(self) -> None:
        """Nothing to free."""
