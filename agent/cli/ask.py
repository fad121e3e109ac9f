"""``deskpilot ask "QUESTION"``: one question about an image, a screenshot, or nothing at all.

This is the model's document, chart and math use rather than the agent's: the image goes
first (as in the model's own samples), the reasoning trace streams dimmed as it is written
(reasoning mode, the default: the card's mode for charts, math and science), and the answer is
printed on its own once it is complete; ``--json`` prints one object for scripts instead.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from deskpilot.agent.cli.console import say, say_dim
from deskpilot.agent.cli.errors import EXIT_FAILED, EXIT_OK, UserError
from deskpilot.models.prompt import IMAGE_MARKER, THINK_CLOSE, THINK_OPEN
from deskpilot.models.runtime import Mode, Request

if TYPE_CHECKING:
    from deskpilot.agent.cli.options import AskOptions
    from deskpilot.grounding.preprocess import ModelImage


def ask_request(question: str, image: ModelImage | None, *, mode: Mode,
                max_answer_tokens: int, max_reasoning_tokens: int,
                temperature: float) -> Request:
    """The request: the image first when there is one, then the question, unconstrained."""
    prompt = f"{IMAGE_MARKER}\n{question}" if image is not None else question
    return Request(prompt=prompt, image=image, mode=mode, max_answer_tokens=max_answer_tokens,
                   max_reasoning_tokens=max_reasoning_tokens, temperature=temperature)


@dataclass
class _Trace:
    """Shows the reasoning trace dimmed as it streams; the answer waits for the end."""

    inside: bool = False
    shown: bool = False

    def __call__(self, piece: str) -> None:
        if THINK_OPEN in piece:
            self.inside = True
            piece = piece.split(THINK_OPEN, 1)[1]
        if THINK_CLOSE in piece:
            self._show(piece.split(THINK_CLOSE, 1)[0])
            self.inside = False
            return
        if self.inside:
            self._show(piece)

    def _show(self, text: str) -> None:
        if text:
            say_dim(text)
            self.shown = True


def _image(options: AskOptions) -> ModelImage | None:
    from deskpilot.grounding.capture import CaptureError, Frame
    from deskpilot.grounding.geometry import ScreenGeometry
    from deskpilot.grounding.preprocess import prepare

    if options.screen:
        from deskpilot.grounding.capture import MssScreen

        try:
            with MssScreen(options.monitor) as screen:
                frame = screen.grab()
        except (CaptureError, OSError) as exc:
            raise UserError(f"--screen: {exc}") from None
        return prepare(frame, max_patches=options.max_patches)
    if options.image is None:
        return None
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(options.image) as img:
            rgb = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"--image {options.image}: {exc}") from None
    height, width = rgb.shape[:2]
    frame = Frame(rgb, ScreenGeometry(0, 0, width, height), 0.0)
    return prepare(frame, max_patches=options.max_patches)


def run_ask(options: AskOptions) -> int:
    """Ask once; print the trace and the answer (or one JSON object); the exit status."""
    from deskpilot.models.catalog import ModelError
    from deskpilot.models.open import open_runtime
    from deskpilot.models.runtime import RuntimeFailure

    image = _image(options)
    trace = _Trace()
    request = ask_request(options.question, image, mode=options.mode,
                          max_answer_tokens=options.max_tokens,
                          max_reasoning_tokens=options.max_reasoning_tokens,
                          temperature=options.temperature)
    if not options.json:
        request = replace(request, on_text=trace)
    try:
        runtime = open_runtime(options.model)
    except (ModelError, RuntimeFailure, ValueError) as exc:
        raise UserError(str(exc)) from None
    try:
        reply = runtime.complete(request)
    except RuntimeFailure as exc:
        say(f"deskpilot: the model failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        name = runtime.name
        runtime.close()
    if options.json:
        say(json.dumps({
            "question": options.question, "answer": reply.answer, "reasoning": reply.reasoning,
            "mode": options.mode.value, "model": name,
            "image": ("screen" if options.screen else
                      str(options.image) if options.image is not None else None),
            "prompt_tokens": reply.prompt_tokens, "image_tokens": reply.image_tokens,
            "output_tokens": reply.output_tokens, "truncated": reply.truncated}))
        return EXIT_OK
    if trace.shown:
        say("")  # end the dimmed trace's last line
    say(reply.answer)
    if reply.truncated:
        say(f"(answer cut at {options.max_tokens} tokens)", file=sys.stderr)
    return EXIT_OK


__all__ = ["ask_request", "run_ask"]
