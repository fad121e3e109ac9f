"""The in-process llama.cpp runtime on a tiny random-weight Phi-4-RV-shaped pair."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from deskpilot.actions.schema import action_grammar, max_answer_chars
from deskpilot.actions.types import ACTION_NAMES
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.grounding.preprocess import prepare
from deskpilot.models.runtime import Mode, Request, RuntimeFailure

pytestmark = pytest.mark.llama


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    from deskpilot.models.tiny import write_tiny_pair

    return write_tiny_pair(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def runtime(pair):
    from deskpilot.models.llamacpp import LlamaCppRuntime

    rt = LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=4096)
    yield rt
    rt.close()


def _image(width: int = 640, height: int = 368, patches: int = 1024):
    rgb = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return prepare(Frame(rgb, ScreenGeometry(0, 0, width, height), 0.0), max_patches=patches)


def _request(**kw) -> Request:
    allowed = kw.pop("allowed", None)
    base = dict(prompt="Next action:\n<image>", image=_image(), grammar=action_grammar(allowed),
                max_answer_tokens=max_answer_chars(allowed) + 8, temperature=0.0)
    return Request(**{**base, **kw})


@pytest.mark.parametrize("allowed", [None, *[[n] for n in ACTION_NAMES]],
                         ids=["all", *ACTION_NAMES])
def test_grammar_compiles_in_llama_cpp(runtime, allowed) -> None:
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(runtime._llama.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, action_grammar(allowed).encode(),
                                                   b"root")
    assert sampler, "llama.cpp rejected the generated grammar"
    llama_cpp.llama_sampler_free(sampler)


def test_direct_answer_is_one_json_action(runtime) -> None:
    reply = runtime.complete(_request())
    data = json.loads(reply.answer)
    assert data["action"] in ACTION_NAMES
    assert reply.image_tokens == (640 // 16) * (368 // 16)
    assert reply.prompt_tokens > reply.image_tokens and not reply.truncated
    assert {"image_encode_s", "prefill_s", "decode_s"} <= set(reply.timings)


def test_sampled_answers_are_always_well_formed_json(runtime) -> None:
    """Random weights at temperature 1 explore the grammar; every answer must be valid JSON,
    and the only refusals left to the parser are the ones a grammar cannot express."""
    from deskpilot.actions.parse import ActionError, parse_action

    image = _image(256, 256, 256)
    answers = set()
    for _ in range(24):
        reply = runtime.complete(_request(image=image, temperature=1.0))
        answers.add(reply.answer)
        json.loads(reply.answer)
        try:
            parse_action(reply.answer)
        except ActionError as exc:
            assert "x1 <= x2" in str(exc) or "less than or equal to 30" in str(exc), exc
    assert len(answers) > 12  # each call samples afresh


def test_greedy_decoding_is_repeatable_within_a_build(runtime) -> None:
    assert runtime.complete(_request()).answer == runtime.complete(_request()).answer


def test_reasoning_is_bounded_then_answered(runtime) -> None:
    reply = runtime.complete(_request(mode=Mode.REASONING, max_reasoning_tokens=16,
                                      temperature=0.8))
    assert reply.reasoning  # random weights ramble until the budget closes the trace
    assert json.loads(reply.answer)["action"] in ACTION_NAMES
    assert reply.output_tokens <= 16 + 1 + max_answer_chars() + 8


def test_auto_mode_still_answers(runtime) -> None:
    assert json.loads(runtime.complete(_request(mode=Mode.AUTO)).answer)["action"]


def test_our_output_limit_holds(runtime) -> None:
    reply = runtime.complete(_request(allowed=["type"], max_answer_tokens=10, temperature=1.0))
    assert reply.truncated and reply.output_tokens <= 10


def test_streaming_callback_sees_the_answer(runtime) -> None:
    pieces: list[str] = []
    reply = runtime.complete(_request(on_text=pieces.append))
    assert "".join(pieces).strip() == reply.answer


def test_a_streamed_trace_comes_between_think_tags(runtime) -> None:
    pieces: list[str] = []
    reply = runtime.complete(_request(on_text=pieces.append, mode=Mode.REASONING,
                                      max_reasoning_tokens=12))
    streamed = "".join(pieces)
    assert pieces[0] == "<think>" and streamed.count("</think>") == 1
    trace, answer = streamed[len("<think>"):].split("</think>")
    assert trace.strip() == reply.reasoning and answer.strip() == reply.answer


def test_image_marker_must_appear_once(runtime) -> None:
    with pytest.raises(ValueError, match="exactly once"):
        runtime.complete(_request(prompt="no marker here"))


def test_prompt_larger_than_context_is_a_clear_failure(pair) -> None:
    from deskpilot.models.llamacpp import LlamaCppRuntime

    rt = LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=512)
    try:
        with pytest.raises(RuntimeFailure, match="more than the context"):
            rt.complete(_request())
    finally:
        rt.close()
    rt.close()  # twice is fine
    with pytest.raises(RuntimeFailure, match="closed"):
        rt.complete(_request())


def test_missing_files_name_the_file(tmp_path: Path) -> None:
    from deskpilot.models.llamacpp import LlamaCppRuntime

    with pytest.raises(RuntimeFailure, match="model file not found"):
        LlamaCppRuntime(tmp_path / "nope.gguf", tmp_path / "mm.gguf")


def test_native_output_stays_off_stderr(pair) -> None:
    code = textwrap.dedent(f"""
        import logging
        import numpy as np
        from pathlib import Path
        logging.getLogger().addHandler(logging.NullHandler())  # only native writes may show
        from deskpilot.grounding.capture import Frame
        from deskpilot.grounding.geometry import ScreenGeometry
        from deskpilot.grounding.preprocess import prepare
        from deskpilot.models.llamacpp import LlamaCppRuntime
        from deskpilot.models.runtime import Request
        rt = LlamaCppRuntime(Path({str(pair.model)!r}), Path({str(pair.mmproj)!r}), n_ctx=4096)
        rgb = np.zeros((368, 640, 3), np.uint8)
        img = prepare(Frame(rgb, ScreenGeometry(0, 0, 640, 368), 0.0), max_patches=1024)
        print(rt.complete(Request(prompt="<image>", image=img, max_answer_tokens=4)).output_tokens)
        rt.close()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr[:2000]


# ---------------------------------------------------------------- prefix reuse, image paths

def _agent_request(history: list[str], seed_image: int = 1) -> Request:
    from deskpilot.actions.schema import describe_actions
    from deskpilot.models.prompt import agent_prompt

    rgb = np.random.default_rng(seed_image).integers(0, 256, (368, 640, 3), dtype=np.uint8)
    image = prepare(Frame(rgb, ScreenGeometry(0, 0, 640, 368), 0.0), max_patches=256)
    prompt = agent_prompt("open the File menu", actions_reference=describe_actions(),
                          history=history)
    return Request(prompt=prompt, image=image, grammar=action_grammar(None),
                   max_answer_tokens=max_answer_chars(None) + 8, temperature=0.0)


def test_prefix_reuse_skips_the_static_prompt_on_the_next_step(pair) -> None:
    from deskpilot.models.llamacpp import LlamaCppRuntime
    from deskpilot.models.prompt import render_chat

    rt = LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=8192)
    try:
        first = rt.complete(_agent_request([]))
        second = rt.complete(_agent_request(["click on File"], seed_image=2))
        # The static part: the chat header and instructions up to and including the task line.
        text = render_chat(_agent_request([]).prompt, template=rt._template, mode=Mode.DIRECT)
        static = text[: text.index("Task: open the File menu") + len("Task: open the File menu")]
        static_tokens = len(rt._llama.tokenize(static.encode(), add_bos=False, special=True))
    finally:
        rt.close()
    assert first.reused_tokens == 0
    assert second.reused_tokens >= 0.9 * static_tokens, (second.reused_tokens, static_tokens)
    evaluated = second.prompt_tokens - second.reused_tokens
    assert evaluated < first.prompt_tokens - 0.9 * static_tokens


def test_prefix_reuse_does_not_change_greedy_answers(pair) -> None:
    from deskpilot.models.llamacpp import LlamaCppRuntime

    histories = [[], ["click on File"], ["click on File", "type 'report'"]]
    answers = {}
    for reuse in (True, False):
        rt = LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=8192, reuse_prefix=reuse)
        try:
            replies = [rt.complete(_agent_request(h, seed_image=i))
                       for i, h in enumerate(histories)]
        finally:
            rt.close()
        answers[reuse] = [r.answer for r in replies]
        assert all(r.reused_tokens > 0 for r in replies[1:]) == reuse
    assert answers[True] == answers[False]


def test_raw_rgb_and_png_give_the_same_image_tokens(runtime) -> None:
    import io

    from PIL import Image

    image = _image(640, 368, 256)
    png = io.BytesIO()
    Image.fromarray(image.rgb).save(png, format="PNG")
    raw = runtime.embed_image(image)
    decoded = runtime.embed_image(png.getvalue())
    assert raw.shape == decoded.shape and raw.shape[0] == image.n_patches
    np.testing.assert_array_equal(raw, decoded)
