"""Prompt layout and reply splitting, against the real template's structure."""

from __future__ import annotations

import pytest

from deskpilot.models.prompt import (
    IMAGE_MARKER,
    agent_prompt,
    render_chat,
    split_reply,
)
from deskpilot.models.runtime import Mode
from deskpilot.models.tiny import CHAT_TEMPLATE

# The structure of Phi-4-reasoning-vision's shipped template (system text shortened).
REAL_SHAPE = (
    "<|im_start|>system<|im_sep|>SYSTEM<|im_end|>\n"
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n"
    "{{ '<|im_start|>user<|im_sep|>' + message['content'] + '<|im_end|>' }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "<|im_start|>assistant<|im_sep|>\n"
    "{% generation %}\n"
    "{{ message['content'] + '<|im_end|>' }}\n"
    "{% endgeneration %}\n"
    "{% endif %}\n"
    "{% endfor %}\n"
    "{% if add_generation_prompt %}\n"
    "{{ '<|im_start|>assistant<|im_sep|>' }}\n"
    "{% endif %}"
)


@pytest.mark.parametrize(("mode", "suffix"), [(Mode.DIRECT, "<|dummy_84|>"),
                                               (Mode.REASONING, "<think>"),
                                               (Mode.AUTO, "")])
def test_render_chat_modes(mode: Mode, suffix: str) -> None:
    text = render_chat("hello <image>", template=REAL_SHAPE, mode=mode)
    assert text == ("<|im_start|>system<|im_sep|>SYSTEM<|im_end|>\n"
                    "<|im_start|>user<|im_sep|>hello <image><|im_end|>\n"
                    # The template leaves a newline after the generation prompt; the official
                    # sample appends the mode token after it.
                    "<|im_start|>assistant<|im_sep|>\n" + suffix)


def test_tiny_model_template_renders_like_the_real_one() -> None:
    real = render_chat("x", template=REAL_SHAPE, mode=Mode.DIRECT)
    tiny = render_chat("x", template=CHAT_TEMPLATE, mode=Mode.DIRECT)
    assert tiny.split("<|im_end|>", 1)[1] == real.split("<|im_end|>", 1)[1]


def test_fallback_template_has_the_same_turns() -> None:
    text = render_chat("q", template=None, mode=Mode.DIRECT)
    assert "<|im_start|>user<|im_sep|>q<|im_end|>\n<|im_start|>assistant<|im_sep|>\n<|dummy_84|>" \
        in text


@pytest.mark.parametrize(("raw", "reasoning", "answer"), [
    ('{"action": "wait"}', "", '{"action": "wait"}'),
    ('<|dummy_84|> {"action": "wait"}', "", '{"action": "wait"}'),
    ('<think> look at it </think> {"a": 1}', "look at it", '{"a": 1}'),
    ("the plan </think>", "the plan", ""),
    ("<think> unfinished", "unfinished", ""),
])
def test_split_reply(raw: str, reasoning: str, answer: str) -> None:
    assert split_reply(raw) == (reasoning, answer)


def test_agent_prompt_puts_static_part_first_and_image_last() -> None:
    a = agent_prompt("do it", actions_reference="REF", history=["click"], feedback="bad")
    b = agent_prompt("do it", actions_reference="REF", history=["click", "type"])
    assert a.count(IMAGE_MARKER) == 1
    assert a.rstrip().endswith(f"{IMAGE_MARKER}\nNext action:")
    static = a.split("Steps taken so far")[0]
    assert b.startswith(static)
    assert "Task: do it" in static and "REF" in static
    assert "Your previous reply could not be used: bad" in a
    assert "never instructions" in a
