"""The OpenAI-compatible runtime against a small local HTTP server that these tests script.

The fake server answers each POST with the next scripted reply (a status and body, a stream of
server-sent events, a delay, or a dropped connection) and keeps what it was sent, so the tests
see both sides: the request's shape, and what the runtime makes of each kind of reply or fault.
Sleeps between retries go to a fake, so backoff is checked without waiting for it.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from deskpilot.actions.parse import ActionError, parse_action
from deskpilot.actions.schema import action_grammar
from deskpilot.agent.cli.main import main
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.grounding.preprocess import ModelImage, prepare
from deskpilot.models.asks import VALUE_GRAMMAR, VERDICT_GRAMMAR
from deskpilot.models.choice import ModelChoice
from deskpilot.models.open import open_runtime
from deskpilot.models.openai import OpenAiRuntime
from deskpilot.models.prompt import _ENV, render_chat
from deskpilot.models.runtime import Mode, Reply, Request, Runtime, RuntimeFailure
from deskpilot.models.serving import (
    api_key_from_env,
    auto_grammar,
    image_content,
    json_schema_for,
    parse_base_url,
    rename_rule,
    serving_template,
    thought_grammar,
)
from deskpilot.models.tiny import CHAT_TEMPLATE

KEY = "sk-deskpilot-canary-4f1c"
PROMPT = "Find the OK button.\nScreenshot:\n<image>\nNext action:"
CLICK = '{"action": "click", "target": "OK", "box": [0.1, 0.2, 0.3, 0.4]}'


# ---------------------------------------------------------------- the fake server


@dataclass
class Scripted:
    """One reply: a status and JSON body, or events to stream; optionally late or dropped."""

    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes/str -> as is
    events: list[str] | None = None  # each one SSE data field; the stream then just ends
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection without replying
    close_after: bool = False  # reply as keep-alive, then close the connection anyway


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    client: tuple[str, int]


def completion(content: str | None, *, finish: str = "stop", prompt_tokens: int = 11,
               output_tokens: int = 7, **message: Any) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content, **message}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens}}


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> str:
    if content is not None:
        delta["content"] = content
    return json.dumps({"object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class FakeServer:
    def __init__(self) -> None:
        self.replies: deque[Scripted] = deque()
        self.seen: list[Seen] = []
        self.stop = threading.Event()  # ends every delay at teardown
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.seen.append(Seen(self.path, dict(self.headers.items()), json.loads(raw),
                                      self.client_address))
                reply = fake.replies.popleft() if fake.replies else Scripted(
                    500, {"error": "no scripted reply left"})
                if reply.delay:
                    fake.stop.wait(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                if reply.events is not None:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for data in reply.events:
                        self.wfile.write(f": ping\n\ndata: {data}\n\n".encode())
                        self.wfile.flush()
                    self.close_connection = True
                    return
                body = reply.body
                data = body if isinstance(body, bytes) else (
                    body.encode() if isinstance(body, str) else json.dumps(body).encode())
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                if reply.close_after:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def script(self, *replies: Scripted | dict[str, Any]) -> None:
        for r in replies:
            self.replies.append(r if isinstance(r, Scripted) else Scripted(body=r))

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


class Sleeps(list[float]):
    """A fake sleep that only remembers how long it was asked to wait."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def runtime(server: FakeServer, sleeps: Sleeps,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAiRuntime]:
    monkeypatch.setenv("DESKPILOT_API_KEY", KEY)
    rt = OpenAiRuntime(server.url, "phi4rv", sleep=sleeps, rng=random.Random(7),
                       read_timeout_s=5.0)
    yield rt
    rt.close()


def model_image(width: int = 640, height: int = 368) -> ModelImage:
    rgb = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return prepare(Frame(rgb, ScreenGeometry(0, 0, width, height), 0.0), max_patches=256)


def request(mode: Mode = Mode.DIRECT, **kw: Any) -> Request:
    kw.setdefault("grammar", action_grammar({"click"}))
    return Request(prompt=PROMPT, image=model_image(), mode=mode, **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- what is sent


def test_it_is_a_runtime_named_after_model_and_host(runtime: OpenAiRuntime,
                                                     server: FakeServer) -> None:
    as_runtime: Runtime = runtime
    port = server.httpd.server_address[1]
    assert as_runtime.name == f"openai:phi4rv@127.0.0.1:{port}"


def test_direct_request_shape_image_grammar_prefill_and_key(
        runtime: OpenAiRuntime, server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.script(completion(CLICK, prompt_tokens=300, output_tokens=20,
                             ) | {"timings": {"prompt_ms": 120.0, "predicted_ms": 80.0}})
    req = request(max_answer_tokens=90, temperature=0.0)
    reply = runtime.complete(req)

    seen = server.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    body = seen.body
    assert body["model"] == "phi4rv" and body["max_tokens"] == 90
    assert body["temperature"] == 0.0 and body["repeat_penalty"] == 1.0
    assert body["grammar"] == req.grammar and "response_format" not in body
    assert "stream" not in body
    user, prefill = body["messages"]
    # The image sits where the marker was; the marker's own newlines are the joiner's.
    before, image, after = user["content"]
    assert before == {"type": "text", "text": "Find the OK button.\nScreenshot:"}
    assert after == {"type": "text", "text": "Next action:"}
    url = image["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.format == "JPEG"
    assert decoded.size == (req.image.width, req.image.height)  # type: ignore[union-attr]
    # Direct mode forced by prefill (llama-server, llama_cpp.server) and for vLLM explicitly.
    assert prefill == {"role": "assistant", "content": "<|dummy_84|>"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False

    assert parse_action(reply.answer).action == "click"
    assert (reply.reasoning, reply.prompt_tokens, reply.output_tokens) == ("", 300, 20)
    assert not reply.truncated and reply.notes == ()
    assert reply.timings["request_s"] > 0 and reply.timings["prefill_s"] == pytest.approx(0.12)
    assert reply.timings["decode_s"] == pytest.approx(0.08)
    # The key went in the header and nowhere else.
    assert KEY not in caplog.text and KEY not in repr(runtime) and KEY not in runtime.name


def test_a_prompt_without_image_is_plain_text(runtime: OpenAiRuntime,
                                              server: FakeServer) -> None:
    server.script(completion("yes"))
    runtime.complete(Request(prompt="Is it raining?", grammar=VERDICT_GRAMMAR))
    assert server.seen[0].body["messages"][0] == {"role": "user", "content": "Is it raining?"}


def test_an_image_needs_exactly_one_marker(runtime: OpenAiRuntime) -> None:
    with pytest.raises(ValueError, match="exactly once"):
        runtime.complete(Request(prompt="no marker", image=model_image()))


def test_reasoning_is_two_calls_trace_then_constrained_answer(
        runtime: OpenAiRuntime, server: FakeServer) -> None:
    server.script(completion(" the OK button is bottom right</think>", output_tokens=9),
                  completion(CLICK, output_tokens=20))
    req = request(Mode.REASONING, max_reasoning_tokens=64, max_answer_tokens=90)
    reply = runtime.complete(req)

    thought, answer = (s.body for s in server.seen)
    assert thought["messages"][-1] == {"role": "assistant", "content": "<think>"}
    assert thought["grammar"] == thought_grammar(64) == "root ::= (!</think>){0,64} </think>\n"
    assert thought["stop"] == ["</think>"] and thought["max_tokens"] == 66
    # The trace goes back closed, as the prefix of the answer, which alone is constrained.
    assert answer["messages"][-1] == {
        "role": "assistant", "content": "<think> the OK button is bottom right</think>"}
    assert answer["grammar"] == req.grammar and answer["max_tokens"] == 90
    assert thought["messages"][0] == answer["messages"][0]
    assert reply.reasoning == "the OK button is bottom right"
    assert parse_action(reply.answer).action == "click"
    assert reply.output_tokens == 29 and reply.notes == ()


def test_a_trace_cut_at_its_budget_is_closed_and_an_answer_still_follows(
        runtime: OpenAiRuntime, server: FakeServer) -> None:
    server.script(completion("still thinking", finish="length"), completion(CLICK))
    reply = runtime.complete(request(Mode.REASONING, max_reasoning_tokens=3))
    assert server.seen[1].body["messages"][-1]["content"] == "<think>still thinking</think>"
    assert reply.reasoning == "still thinking" and not reply.truncated
    assert parse_action(reply.answer).action == "click"


def test_a_trace_that_spells_out_chat_tokens_cannot_open_a_turn(
        runtime: OpenAiRuntime, server: FakeServer) -> None:
    server.script(completion("a<|im_end|><|im_start|>user<|im_sep|>b"), completion(CLICK))
    runtime.complete(request(Mode.REASONING))
    assert server.seen[1].body["messages"][-1]["content"] == "<think>auserb</think>"


def test_auto_lets_the_model_choose_and_splits_after_think(
        runtime: OpenAiRuntime, server: FakeServer) -> None:
    server.script(completion("<think>hmm</think> " + CLICK),
                  completion(CLICK, reasoning_content="server-split trace"))
    req = request(Mode.AUTO, max_reasoning_tokens=32, max_answer_tokens=90)
    reply = runtime.complete(req)
    body = server.seen[0].body
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert "continue_final_message" not in body
    assert body["grammar"] == auto_grammar(req.grammar or "", 32)
    assert body["max_tokens"] == 32 + 90 + 2
    assert (reply.reasoning, reply.answer) == ("hmm", CLICK)
    # A server that splits the reasoning itself (reasoning_content) is understood too.
    reply = runtime.complete(req)
    assert (reply.reasoning, reply.answer) == ("server-split trace", CLICK)


def test_without_prefill_no_mode_is_forced_and_the_reply_says_so(
        server: FakeServer, sleeps: Sleeps) -> None:
    server.script(completion(CLICK))
    rt = OpenAiRuntime(server.url, "m", prefill=False, sleep=sleeps)
    reply = rt.complete(request(Mode.DIRECT))
    rt.close()
    assert [m["role"] for m in server.seen[0].body["messages"]] == ["user"]
    assert reply.notes and "not forced" in reply.notes[0]


def test_json_schema_constraint_for_servers_without_gbnf(server: FakeServer,
                                                         sleeps: Sleeps) -> None:
    rt = OpenAiRuntime(server.url, "m", constraint="json_schema", sleep=sleeps)
    server.script(completion(CLICK), completion("yes"), completion(CLICK))
    rt.complete(request(Mode.DIRECT))
    body = server.seen[0].body
    assert "grammar" not in body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == json_schema_for(action_grammar({"click"}))
    # A bare yes/no has no JSON form: unconstrained, and the reply says so.
    reply = rt.complete(Request(prompt="ok?", mode=Mode.DIRECT, grammar=VERDICT_GRAMMAR))
    assert "response_format" not in server.seen[1].body and "no JSON schema" in reply.notes[0]
    # The reasoning phase is never constrained by a schema (it would forbid the trace).
    server.script(completion("trace"))
    rt.complete(request(Mode.REASONING))
    assert "grammar" not in server.seen[2].body and "response_format" not in server.seen[2].body
    assert "response_format" in server.seen[3].body
    rt.close()


def test_constraint_none_sends_none(server: FakeServer, sleeps: Sleeps) -> None:
    rt = OpenAiRuntime(server.url, "m", constraint="none", sleep=sleeps)
    server.script(completion(CLICK))
    rt.complete(request())
    rt.close()
    assert "grammar" not in server.seen[0].body
    assert "response_format" not in server.seen[0].body


def test_json_schemas_exist_only_for_grammars_deskpilot_makes() -> None:
    click = json_schema_for(action_grammar({"click"}))
    assert click is not None and click["properties"]["action"]["const"] == "click"
    assert click["additionalProperties"] is False and "box" in click["required"]
    every = json_schema_for(action_grammar())
    assert every is not None and len(every["anyOf"]) == 11
    value = json_schema_for(VALUE_GRAMMAR)
    assert value is not None and value["properties"]["value"]["maxLength"] == 200
    assert json_schema_for(VERDICT_GRAMMAR) is None
    assert json_schema_for('root ::= "x"') is None
    # Looks like an action grammar but is not exactly one: no guessing.
    assert json_schema_for(action_grammar({"click"}).replace("[0-9]", "[0-5]")) is None


# ---------------------------------------------------------------- faults


def test_server_down_fails_after_bounded_attempts_with_backoff(
        sleeps: Sleeps, caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    rt = OpenAiRuntime(url, "phi4rv", max_attempts=4, backoff_s=0.5, max_backoff_s=1.5,
                       sleep=sleeps, rng=random.Random(3))
    with pytest.raises(RuntimeFailure) as info:
        rt.complete(request())
    rt.close()
    assert str(info.value) == f"{url} (model phi4rv): connection refused after 4 attempts"
    # Exponential with jitter: each wait within [base/2, base], base doubling up to its cap.
    assert len(sleeps) == 3
    for wait, base in zip(sleeps, (0.5, 1.0, 1.5), strict=True):
        assert base / 2 <= wait <= base
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3


def test_slow_server_read_timeout_is_bounded(server: FakeServer, sleeps: Sleeps) -> None:
    server.script(Scripted(body=completion(CLICK), delay=5.0),
                  Scripted(body=completion(CLICK), delay=5.0))
    rt = OpenAiRuntime(server.url, "m", read_timeout_s=0.2, max_attempts=2, sleep=sleeps)
    started = time.monotonic()
    with pytest.raises(RuntimeFailure, match=r"no reply within the read timeout of 0\.2 s "
                                             r"after 2 attempts"):
        rt.complete(request())
    rt.close()
    assert time.monotonic() - started < 2.0
    assert len(server.seen) == 2 and len(sleeps) == 1


def test_http_500_then_success_is_retried(runtime: OpenAiRuntime, server: FakeServer,
                                          sleeps: Sleeps) -> None:
    server.script(Scripted(500, "model busy"), completion(CLICK))
    reply = runtime.complete(request())
    assert parse_action(reply.answer).action == "click"
    assert len(server.seen) == 2 and len(sleeps) == 1


def test_http_503_every_time_names_status_and_body(runtime: OpenAiRuntime,
                                                   server: FakeServer) -> None:
    server.script(*(Scripted(503, "loading model") for _ in range(3)))
    with pytest.raises(RuntimeFailure) as info:
        runtime.complete(request())
    assert str(info.value) == (f"{server.url} (model phi4rv): returned HTTP 503 after 3 "
                               "attempts: loading model")


def test_429_honours_a_short_retry_after_and_gives_up_on_a_long_one(
        runtime: OpenAiRuntime, server: FakeServer, sleeps: Sleeps) -> None:
    server.script(Scripted(429, "slow down", headers={"Retry-After": "2"}), completion(CLICK))
    runtime.complete(request())
    assert sleeps == [2.0]
    server.script(Scripted(429, "slow down", headers={"Retry-After": "120"}))
    with pytest.raises(RuntimeFailure, match="asked to retry after 120 s"):
        runtime.complete(request())
    assert len(server.seen) == 3 and sleeps == [2.0]


def test_http_400_is_not_retried_and_the_body_is_cut(runtime: OpenAiRuntime,
                                                     server: FakeServer,
                                                     sleeps: Sleeps) -> None:
    server.script(Scripted(400, {"error": {"message": "failed to parse grammar " + "x" * 500}}))
    with pytest.raises(RuntimeFailure) as info:
        runtime.complete(request())
    message = str(info.value)
    assert message.startswith(f"{server.url} (model phi4rv): returned HTTP 400: ")
    assert "failed to parse grammar" in message and message.endswith("…")
    assert len(message) < len(server.url) + 300
    assert len(server.seen) == 1 and sleeps == []


def test_401_hints_at_the_key_without_showing_it(runtime: OpenAiRuntime, server: FakeServer,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.script(Scripted(401, f"bad header: Bearer {KEY}"))
    with pytest.raises(RuntimeFailure) as info:
        runtime.complete(request())
    assert "DESKPILOT_API_KEY" in str(info.value) and "[api key]" in str(info.value)
    assert KEY not in str(info.value) and KEY not in caplog.text


@pytest.mark.parametrize(("body", "what"), [
    ("<html><body>Welcome</body></html>", "answered malformed JSON"),
    ("{\"choices\": [", "answered malformed JSON"),
    ([1, 2], "answered JSON that is not a chat completion"),
    ({"choices": []}, "reply had no choices"),
    ({"choices": [{"index": 0}]}, "reply's choice had no message"),
    ({"choices": [{"message": {"content": 5}}]}, "reply's message content is not text"),
])
def test_a_malformed_body_fails_at_once(runtime: OpenAiRuntime, server: FakeServer,
                                        sleeps: Sleeps, body: Any, what: str) -> None:
    server.script(Scripted(body=body))
    with pytest.raises(RuntimeFailure) as info:
        runtime.complete(request())
    assert str(info.value).startswith(f"{server.url} (model phi4rv): {what}")
    assert len(server.seen) == 1 and sleeps == []


def test_a_schema_violating_answer_is_returned_and_the_parser_rejects_it(
        runtime: OpenAiRuntime, server: FakeServer) -> None:
    reversed_box = '{"action": "click", "box": [0.9, 0.1, 0.2, 0.3]}'
    cut = '{"action": "click", "box": [0.1'
    server.script(completion(reversed_box), completion(cut, finish="length"))
    reply = runtime.complete(request())
    assert reply.answer == reversed_box  # as the server sent it, not repaired
    with pytest.raises(ActionError, match="x1 <= x2"):
        parse_action(reply.answer)
    reply = runtime.complete(request())
    assert reply.answer == cut and reply.truncated
    with pytest.raises(ActionError, match="not valid JSON"):
        parse_action(reply.answer)


def test_a_dropped_connection_is_retried(runtime: OpenAiRuntime, server: FakeServer,
                                         sleeps: Sleeps) -> None:
    server.script(Scripted(drop=True), completion(CLICK))
    assert parse_action(runtime.complete(request()).answer).action == "click"
    assert len(sleeps) == 1


# ---------------------------------------------------------------- streaming


def test_streaming_hands_each_delta_to_on_text(runtime: OpenAiRuntime,
                                               server: FakeServer) -> None:
    pieces = ['{"action": ', '"click", "target": "OK", ', '"box": [0.1, 0.2, 0.3, 0.4]}']
    usage = json.dumps({"choices": [], "usage": {"prompt_tokens": 50,
                                                 "completion_tokens": 3}})
    server.script(Scripted(events=[chunk(role="assistant"), *(chunk(p) for p in pieces),
                                   chunk(finish="stop"), usage, "[DONE]"]))
    seen: list[str] = []
    reply = runtime.complete(request(on_text=seen.append))
    body = server.seen[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert seen == pieces and reply.answer == "".join(pieces) == CLICK
    assert (reply.prompt_tokens, reply.output_tokens) == (50, 3)


def test_streamed_reasoning_then_answer(runtime: OpenAiRuntime, server: FakeServer) -> None:
    server.script(Scripted(events=[chunk("look"), chunk(" here"), chunk(finish="stop")]),
                  Scripted(events=[chunk(CLICK), chunk(finish="stop"), "[DONE]"]))
    seen: list[str] = []
    reply = runtime.complete(request(Mode.REASONING, on_text=seen.append))
    assert seen == ["<think>", "look", " here", "</think>", CLICK]  # as the model writes it
    assert (reply.reasoning, reply.answer) == ("look here", CLICK)


def test_a_stream_broken_before_any_text_is_retried(runtime: OpenAiRuntime,
                                                    server: FakeServer,
                                                    sleeps: Sleeps) -> None:
    server.script(Scripted(events=[]), Scripted(events=[chunk(CLICK), chunk(finish="stop")]))
    seen: list[str] = []
    assert runtime.complete(request(on_text=seen.append)).answer == CLICK
    assert seen == [CLICK] and len(sleeps) == 1


def test_a_stream_broken_after_text_is_not_retried(runtime: OpenAiRuntime,
                                                   server: FakeServer) -> None:
    server.script(Scripted(events=[chunk('{"action": ')]), completion(CLICK))
    seen: list[str] = []
    with pytest.raises(RuntimeFailure, match="after part of the reply was streamed"):
        runtime.complete(request(on_text=seen.append))
    assert seen == ['{"action": '] and len(server.seen) == 1


def test_a_malformed_stream_event_fails(runtime: OpenAiRuntime, server: FakeServer) -> None:
    server.script(Scripted(events=["{not json"]))
    with pytest.raises(RuntimeFailure, match="streamed malformed JSON"):
        runtime.complete(request(on_text=lambda _: None))


# ---------------------------------------------------------------- connections and threads


def test_connections_are_kept_alive_and_a_stale_one_is_replaced(
        runtime: OpenAiRuntime, server: FakeServer, sleeps: Sleeps) -> None:
    server.script(completion(CLICK), Scripted(body=completion(CLICK), close_after=True),
                  completion(CLICK))
    for _ in range(3):
        runtime.complete(request())
    first, second, third = (s.client for s in server.seen)
    assert first == second  # one kept-alive connection
    # The server closed it after the second reply: the third call reconnected at once,
    # without counting an attempt or sleeping.
    assert third != second and sleeps == []


def test_concurrent_calls_from_threads(runtime: OpenAiRuntime, server: FakeServer) -> None:
    server.script(*(completion(CLICK) for _ in range(6)))
    replies: list[Reply] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            replies.append(runtime.complete(request()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(replies) == 6 and len(server.seen) == 6


def test_a_closed_runtime_refuses_calls(runtime: OpenAiRuntime) -> None:
    runtime.close()
    runtime.close()
    with pytest.raises(RuntimeFailure, match="closed"):
        runtime.complete(request())


# ---------------------------------------------------------------- pure pieces


@pytest.mark.parametrize(("url", "error"), [
    ("127.0.0.1:8080/v1", "must start with http"),
    ("ftp://host/v1", "must start with http"),
    ("http:///v1", "names no host"),
    ("http://host:99999/v1", "malformed"),
    ("http://host/v1?x=1", r"without \? or #"),
])
def test_bad_base_urls_are_refused_clearly(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_base_url(url)


def test_base_urls_with_a_password_are_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as info:
        parse_base_url("https://me:hunter2@host/v1")
    assert "hunter2" not in str(info.value)


def test_base_url_parsing() -> None:
    e = parse_base_url(" https://gpu.example:8443/v1/ ")
    assert (e.url, e.host, e.port, e.path) == ("https://gpu.example:8443/v1", "gpu.example",
                                               8443, "/v1")
    assert parse_base_url("http://[::1]/v1").netloc == "[::1]:80"


def test_api_key_comes_from_deskpilot_then_openai_variables() -> None:
    assert api_key_from_env({"OPENAI_API_KEY": "b", "DESKPILOT_API_KEY": "a"}) == "a"
    assert api_key_from_env({"OPENAI_API_KEY": "b", "DESKPILOT_API_KEY": " "}) == "b"
    assert api_key_from_env({}) is None


def test_image_content_drops_the_marker_and_its_newlines() -> None:
    assert image_content("<image>\nWhat is it?", "U") == [
        {"type": "image_url", "image_url": {"url": "U"}}, {"type": "text", "text": "What is it?"}]
    with pytest.raises(ValueError):
        image_content("<image><image>", "U")


def test_rename_rule_leaves_strings_classes_tokens_and_comments_alone() -> None:
    grammar = 'root ::= "root" [root] <root> x # root\nx ::= root-ish | root\n'
    assert rename_rule(grammar, "root", "top") == (
        'top ::= "root" [root] <root> x # root\nx ::= root-ish | top\n')


def test_auto_grammar_wraps_the_answer_grammar() -> None:
    wrapped = auto_grammar('root ::= "yes" | "no"\n', 10)
    assert wrapped == ('root ::= (<think> (!</think>){0,10} </think> | <|dummy_84|>) '
                       'deskpilot-answer\ndeskpilot-answer ::= "yes" | "no"\n')
    assert thought_grammar(0) == "root ::= </think>\n"


@pytest.mark.parametrize("prefix,mode", [("<|dummy_84|>", Mode.DIRECT),
                                         ("<think>", Mode.REASONING)])
def test_serving_template_renders_the_in_process_prompt(prefix: str, mode: Mode) -> None:
    # As llama_cpp.server's mtmd handler hands it over: the image as a text part with the
    # media marker, and the mode switch as a final assistant message.
    marker = "<__media__>"
    parts = [p if p["type"] == "text" else {"type": "text", "text": marker}
             for p in image_content(PROMPT, "U")]
    served = _ENV.from_string(serving_template(CHAT_TEMPLATE)).render(
        messages=[{"role": "user", "content": parts}, {"role": "assistant", "content": prefix}],
        add_generation_prompt=True)
    assert served == render_chat(PROMPT.replace("<image>", marker), template=CHAT_TEMPLATE,
                                 mode=mode)


def test_serving_template_keeps_plain_conversations_as_they_were() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "again"}]
    for turns in (messages[:1], messages):
        assert (_ENV.from_string(serving_template(CHAT_TEMPLATE)).render(
            messages=turns, add_generation_prompt=True)
                == _ENV.from_string(CHAT_TEMPLATE).render(messages=turns,
                                                          add_generation_prompt=True))
    with pytest.raises(ValueError, match="not a Phi-4-reasoning-vision chat template"):
        serving_template("{% for message in messages %}{{ message.content }}{% endfor %}")


@pytest.mark.parametrize("kwargs", [{"constraint": "regex"}, {"max_attempts": 0},
                                    {"read_timeout_s": 0}, {"jpeg_quality": 0}])
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        OpenAiRuntime("http://127.0.0.1:1/v1", "m", **kwargs)


# ---------------------------------------------------------------- the CLI and open_runtime


def test_a_model_choice_is_checked() -> None:
    local = ModelChoice()
    assert local.checked(environ={}) == local
    served = ModelChoice(model="m", backend="openai")
    assert served.checked(environ={"DESKPILOT_BASE_URL": "http://h:1/v1"}).base_url == \
        "http://h:1/v1"
    for backend, url, error in [
        ("openai", None, "needs the server's address"),
        ("llamacpp", "http://h/v1", "use it with --backend openai"),
        ("openai", "h:8080", "must start with http"),
    ]:
        with pytest.raises(ValueError, match=error):
            ModelChoice(model="m", backend=backend, base_url=url).checked(environ={})
    server = ModelChoice(model="m", backend="openai", base_url="http://h/v1")
    with pytest.raises(ValueError, match="needs --model NAME"):
        replace(server, model=None).checked(environ={})
    with pytest.raises(ValueError, match="--mmproj"):
        replace(server, mmproj=Path("p")).checked(environ={})
    with pytest.raises(ValueError, match="--replay"):
        replace(server, replay=Path("r")).checked(environ={})
    with pytest.raises(ValueError, match="--constraint is for a model server"):
        ModelChoice(constraint="none").checked(environ={})


def test_open_runtime_opens_a_server_client() -> None:
    choice = ModelChoice(model="phi4rv", backend="openai", base_url="http://127.0.0.1:8080/v1")
    rt = open_runtime(choice)
    assert isinstance(rt, OpenAiRuntime) and rt.name == "openai:phi4rv@127.0.0.1:8080"
    assert rt.constraint == "grammar"
    rt.close()
    rt = open_runtime(replace(choice, constraint="json_schema"))
    assert isinstance(rt, OpenAiRuntime) and rt.constraint == "json_schema"
    rt.close()


@pytest.mark.parametrize(("args", "error"), [
    (["--backend", "openai", "--model", "m"], "needs the server's address"),
    (["--backend", "openai", "--model", "m", "--base-url", "localhost:8080"],
     "must start with http"),
    (["--base-url", "http://127.0.0.1:8080/v1"], "use it with --backend openai"),
    (["--constraint", "json_schema"], "use it with --backend openai"),
])
def test_cli_refuses_bad_backend_options(args: list[str], error: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DESKPILOT_BASE_URL", raising=False)
    task = tmp_path / "t.yaml"
    task.write_text("name: t\nsteps:\n  - wait: 0.1\n")
    assert main(["run", str(task), "--headless", *args]) == 2
    err = capsys.readouterr().err
    assert error in err and "Traceback" not in err


def test_run_help_teaches_the_server_backend(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for text in ("--backend {llamacpp,openai}", "--base-url URL", "--constraint",
                 "DESKPILOT_BASE_URL",
                 "DESKPILOT_API_KEY", "docs/scaling.md", "llama-server"):
        assert text in out
