"""The model runtime contract: one screenshot and a prompt in, one reply out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from deskpilot.grounding.preprocess import ModelImage


class Mode(StrEnum):
    """How the model answers: straight away, after a reasoning trace, or its own choice."""

    DIRECT = "direct"
    REASONING = "reasoning"
    AUTO = "auto"


class RuntimeFailure(RuntimeError):
    """The runtime itself failed (load, encode, decode); the run cannot go on."""


@dataclass(frozen=True, slots=True)
class Request:
    """One call to the model.

    ``prompt`` is the user turn's text; it holds the image marker ``<image>`` exactly once when
    ``image`` is given. ``grammar`` (GBNF) constrains the answer, not the reasoning trace.
    ``on_text`` gets the output as it is generated, the way the model writes it: a reasoning
    trace arrives between ``<think>`` and ``</think>``, then the answer.
    """

    prompt: str
    image: ModelImage | None = None  # raw RGB plus the view it shows
    mode: Mode = Mode.DIRECT
    grammar: str | None = None
    max_answer_tokens: int = 512
    max_reasoning_tokens: int = 1024
    temperature: float = 0.0
    on_text: Callable[[str], None] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model produced, split into its reasoning trace and its answer."""

    answer: str
    reasoning: str = ""
    prompt_tokens: int = 0
    image_tokens: int = 0
    output_tokens: int = 0
    truncated: bool = False
    reused_tokens: int = 0  # prompt tokens kept from the previous call instead of evaluated
    reused_image_tokens: int = 0  # the part of reused_tokens that is an image kept evaluated
    timings: dict[str, float] = field(default_factory=dict)
    # What the runtime could not do as asked (a mode it could not force, a constraint the
    # server could not take), in words; empty when the request was carried out as given.
    notes: tuple[str, ...] = ()


class Runtime(Protocol):
    """A vision-language model that answers requests."""

    @property
    def name(self) -> str:
        """A short label for logs and records (model file or script name)."""
        ...

    def complete(self, request: Request) -> Reply:
        """Answer one request; raise :class:`RuntimeFailure` when the runtime breaks."""
        ...

    def close(self) -> None:
        """Free native resources; safe to call twice."""
        ...
