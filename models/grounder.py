"""Locating a described element: Phi-4-reasoning-vision's own grounding call, or the old one.

The native call asks exactly what the model was shown in training (its repository's grounding
sample): the image first, then the fixed sentence with the instruction in it, answered with a
bare list ``[x1, y1, x2, y2]`` of relative coordinates. Decoding is greedy and direct, under a
grammar that admits nothing but four numbers in [0, 1] with at most four decimals, and the list
is read by a strict pattern (never evaluated). The joint call is the earlier JSON click request
(:func:`models.asks.locate_request`), kept so the two can be compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from deskpilot.models.asks import AskError, locate_request, parse_locate
from deskpilot.models.prompt import IMAGE_MARKER
from deskpilot.models.runtime import Mode, Reply, Request, Runtime

if TYPE_CHECKING:
    from deskpilot.grounding.preprocess import ModelImage

# The model's grounding instruction as published, its doubled "the" included.
GROUNDING_SENTENCE = ("Locate the the UI element this instruction describes: {instruction}. "
                      "Output its bbox coordinates using the format of [x1, y1, x2, y2] using "
                      "relative coordinates from 0.0000 to 1.0000.")

BOX_GRAMMAR = (
    'root ::= "[" coord sep coord sep coord sep coord "]"\n'
    'sep ::= "," " "?\n'
    'coord ::= "0" ("." [0-9]{1,4})? | "1" ("." "0"{1,4})?\n'
)
# "[1.0000, 1.0000, 1.0000, 1.0000]" is the longest answer: 32 characters, so 32 tokens at most.
BOX_ANSWER_TOKENS = 40

_NUMBER = r"\s*(\d(?:\.\d{1,4})?)\s*"
_BOX_PATTERN = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")

Box = tuple[float, float, float, float]


class GroundingPrompt(StrEnum):
    """Which question locates a target."""

    NATIVE = "native"  # the model's own sentence, image first, a bare list back
    JOINT = "joint"  # the earlier JSON click with a box inside


class BoxError(AskError):
    """The grounding answer is not a usable box."""


def native_prompt(instruction: str) -> str:
    """The user turn of the model's own grounding call for ``instruction``."""
    words = " ".join(instruction.split()).rstrip(".")
    return f"{IMAGE_MARKER}\n" + GROUNDING_SENTENCE.format(instruction=words)


def native_request(instruction: str, image: ModelImage) -> Request:
    """The native grounding call: direct mode, greedy, the box grammar."""
    return Request(prompt=native_prompt(instruction), image=image, mode=Mode.DIRECT,
                   grammar=BOX_GRAMMAR, max_answer_tokens=BOX_ANSWER_TOKENS, temperature=0.0)


def parse_box(answer: str) -> tuple[Box, str]:
    """The box in a bare ``[x1, y1, x2, y2]`` answer, and a note on anything corrected.

    Corners given in reverse order (x1 > x2 or y1 > y2) are swapped into place and the note
    says so; anything else that is not four numbers in [0, 1] raises :class:`BoxError`.
    """
    match = _BOX_PATTERN.fullmatch(answer.strip())
    if match is None:
        shown = answer.strip()[:60]
        raise BoxError(f"expected [x1, y1, x2, y2] with four numbers from 0 to 1, got {shown!r}")
    x1, y1, x2, y2 = (float(v) for v in match.groups())
    if not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        raise BoxError(f"coordinates outside 0..1: {[x1, y1, x2, y2]}")
    notes = []
    if x1 > x2:
        x1, x2 = x2, x1
        notes.append("x1 > x2: swapped")
    if y1 > y2:
        y1, y2 = y2, y1
        notes.append("y1 > y2: swapped")
    return (x1, y1, x2, y2), "; ".join(notes)


@dataclass(frozen=True, slots=True)
class Located:
    """One grounding call: what was asked, what came back, the box it gave (or why none)."""

    target: str
    prompt: str
    reply: Reply
    box: Box | None
    note: str = ""  # a correction made to the box, or why there is none

    def to_json(self) -> dict[str, object]:
        """The call as a trajectory records it."""
        return {"target": self.target, "prompt": self.prompt, "answer": self.reply.answer,
                "box": None if self.box is None else list(self.box), "note": self.note,
                "image_tokens": self.reply.image_tokens,
                "reused_tokens": self.reply.reused_tokens,
                "reused_image_tokens": self.reply.reused_image_tokens,
                "prompt_tokens": self.reply.prompt_tokens}


class Grounder:
    """Locates described elements on a model image through one runtime."""

    def __init__(self, runtime: Runtime, prompt: GroundingPrompt = GroundingPrompt.NATIVE,
                 *, temperature: float = 0.0) -> None:
        self.runtime = runtime
        self.prompt = prompt
        self._temperature = temperature  # the joint call's; the native one is always greedy

    def request(self, target: str, image: ModelImage) -> Request:
        """The request that locates ``target`` on ``image``."""
        if self.prompt is GroundingPrompt.NATIVE:
            return native_request(target, image)
        return locate_request(target, image, temperature=self._temperature)

    def parse(self, reply: Reply) -> tuple[Box, str]:
        """The box in ``reply`` (relative to the image sent) and a note; AskError otherwise."""
        if self.prompt is GroundingPrompt.NATIVE:
            return parse_box(reply.answer)
        return parse_locate(reply).box, ""

    def locate(self, target: str, image: ModelImage) -> Located:
        """Ask once; an unusable answer gives a :class:`Located` without a box and the reason.

        A failing runtime raises :class:`~deskpilot.models.runtime.RuntimeFailure`.
        """
        request = self.request(target, image)
        reply = self.runtime.complete(request)
        try:
            box, note = self.parse(reply)
        except AskError as exc:
            return Located(target, request.prompt, reply, None, str(exc))
        return Located(target, request.prompt, reply, box, note)


__all__ = ["BOX_GRAMMAR", "GROUNDING_SENTENCE", "BoxError", "Grounder", "GroundingPrompt",
           "Located", "native_prompt", "native_request", "parse_box"]
