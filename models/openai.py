"""Phi-4-reasoning-vision on an OpenAI-compatible server, with deskpilot as a stateless client.

When one machine is not enough, the model runs in a serving engine (llama.cpp's
``llama-server``, vLLM, or llama-cpp-python's ``python -m llama_cpp.server``) and each call is a
``POST {base_url}/chat/completions``. The Phi-4-RV rules of the in-process runtime
(models/llamacpp.py) hold here too; docs/scaling.md says how to start each server.

**Image.** The screenshot goes as a JPEG data URL made from the pixels ``prepare()`` already
sized to the patch grid, so the server's preprocessing leaves them as they are. The user turn is
split at ``<image>`` into text, image, text parts. Servers that flatten the parts join them with
a newline (llama-server does, and so does :func:`serving_template`), so one newline is dropped
on each side of the marker: the server then sees the in-process prompt, image where it was.

**Modes, by assistant prefill.** The messages end with an assistant message holding the mode
switch (``<|dummy_84|>`` direct, ``<think>`` reasoning), which the server continues instead of
opening a new turn: llama-server by default (unless started with ``--no-prefill-assistant``),
vLLM through ``continue_final_message`` (sent), llama_cpp.server only with a GGUF whose chat
template renders a final assistant message open (:func:`serving_template`; its handler cannot
even give Phi-4-RV's own template an image). Reasoning takes two calls, as in-process it takes
two phases: the trace runs to ``</think>`` or ``max_reasoning_tokens`` (then we close it, so an
answer always follows), and the answer follows a prefill of ``<think>trace</think>``. That keeps
the grammar off the trace, gives the trace its own budget, and needs no server to print the
``</think>`` control token, which llama.cpp servers leave out of the text. ``auto`` is one call
without prefill: the model chooses, and the reply is split at ``</think>``, which works only
where the server prints it. With ``prefill=False`` a server that cannot continue a message still
works, but no mode is forced: every call goes like ``auto`` and :attr:`Reply.notes` says so.

**Constraint.** ``grammar`` sends the request's GBNF in llama.cpp's ``grammar`` field
(llama-server, llama_cpp.server); the reasoning phase then uses llama.cpp's token syntax,
``(!</think>){0,N} </think>``, to end the trace at its budget. ``json_schema`` sends
``response_format`` of type ``json_schema`` (vLLM, llama-server, most others) with the schema of
the same answers when deskpilot made the grammar (actions, query values; the schema is looser
about number formats, which the parser checks anyway); a grammar with no JSON form (a
check's bare yes/no) goes unconstrained and the notes say so. ``none`` sends no constraint.
The agent parses and validates whatever comes back; this runtime never repairs an answer.

**Failures.** Connection errors, timeouts and HTTP 408, 429 and 5xx are retried up to
``max_attempts`` times with exponential backoff and jitter; a short Retry-After is honoured, a
long one ends the retries. Other HTTP errors are not retried. A 200 reply whose body is not JSON
or not a chat completion comes from a misconfigured or broken server (a wrong base URL, a proxy
page), not a busy one, so it fails at once instead of paying for the same generation again; a
body cut off mid-read is a connection error and is retried. A stream that breaks after text went
to ``on_text`` is not retried (that text would be shown twice). Each failure is a
:class:`~models.runtime.RuntimeFailure` naming the URL and the model. The API key comes from
``$DESKPILOT_API_KEY`` (or ``$OPENAI_API_KEY``) and appears in no log, message or repr.

This module is the client: what to send per mode and constraint, and when to try again. The
request's parts (API root, image, :func:`serving_template`, grammars and schemas) come from
models/serving.py; connections, reply parsing and failure sorting from models/openai_http.py.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from deskpilot.models.choice import CONSTRAINTS, Constraint
from deskpilot.models.openai_http import (
    MAX_BODY_BYTES,
    Fatal,
    Generated,
    Pool,
    Transient,
    explain_error,
    parse_completion,
    read_stream,
    refuse,
)
from deskpilot.models.prompt import DIRECT_TOKEN, IMAGE_MARKER, THINK_CLOSE, THINK_OPEN, split_reply
from deskpilot.models.runtime import Mode, Reply, Request, RuntimeFailure
from deskpilot.models.serving import (
    JPEG_QUALITY,
    api_key_from_env,
    auto_grammar,
    image_content,
    jpeg_data_url,
    json_schema_for,
    parse_base_url,
    thought_grammar,
)

log = logging.getLogger(__name__)

# Control tokens of the chat format: stripped from text we send back as a prefill, so a trace
# that spelled one out cannot open or close turns of its own.
_SPECIAL = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|</?think>")


# ---------------------------------------------------------------- the runtime


class OpenAiRuntime:
    """Phi-4-reasoning-vision behind an OpenAI-compatible chat completions endpoint.

    ``model`` is the name the server serves. See the module docstring for how modes, images and
    the answer constraint travel, and what is retried. ``sleep`` and ``rng`` are for tests.
    Calls from several threads at once are fine: each uses a connection of its own.
    """

    def __init__(self, base_url: str, model: str, *, constraint: Constraint = "grammar",
                 prefill: bool = True, connect_timeout_s: float = 10.0,
                 read_timeout_s: float = 300.0, max_attempts: int = 3, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0, max_retry_after_s: float = 30.0,
                 api_key: str | None = None, jpeg_quality: int = JPEG_QUALITY,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        self._endpoint = parse_base_url(base_url)
        if not model.strip():
            raise ValueError("the served model's name is empty")
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}, "
                             f"got {constraint!r}")
        for label, value in (("connect_timeout_s", connect_timeout_s),
                             ("read_timeout_s", read_timeout_s)):
            if not value > 0:
                raise ValueError(f"{label} must be positive, got {value}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1-100, got {jpeg_quality}")
        self.model = model.strip()
        self.constraint: Constraint = constraint
        self.prefill = prefill
        self.read_timeout_s = read_timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.jpeg_quality = jpeg_quality
        self._api_key = api_key_from_env() if api_key is None else (api_key.strip() or None)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._pool = Pool(self._endpoint, connect_timeout_s, read_timeout_s)
        self._where = f"{self._endpoint.url} (model {self.model})"
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()

    @property
    def name(self) -> str:
        """``openai:{model}@{host:port}``."""
        return f"openai:{self.model}@{self._endpoint.netloc}"

    @property
    def base_url(self) -> str:
        """The API root calls go to."""
        return self._endpoint.url

    def __repr__(self) -> str:  # the API key stays out
        return (f"OpenAiRuntime({self._endpoint.url!r}, model={self.model!r}, "
                f"constraint={self.constraint!r}, prefill={self.prefill})")

    # ------------------------------------------------------------ one request

    def complete(self, request: Request) -> Reply:
        """Send the request (one call, two for forced reasoning); raise RuntimeFailure when the
        server cannot be reached or does not answer like a chat completions endpoint."""
        if self._pool.closed:
            raise RuntimeFailure(f"{self._where}: the runtime is closed")
        started = time.perf_counter()
        content: str | list[dict[str, Any]] = request.prompt
        encode_s = 0.0
        if request.image is not None:
            if request.prompt.count(IMAGE_MARKER) != 1:
                raise ValueError(f"the prompt must hold {IMAGE_MARKER} exactly once with an "
                                 "image")
            t0 = time.perf_counter()
            url = jpeg_data_url(request.image, self.jpeg_quality)
            encode_s = time.perf_counter() - t0
            content = image_content(request.prompt, url)
        notes: list[str] = []
        mode = request.mode if self.prefill else Mode.AUTO
        if mode is not request.mode:
            notes.append(f"{request.mode.value} mode was asked for but not forced (prefill is "
                         "off): the model chose its mode")
        calls: list[Generated] = []
        if mode is Mode.REASONING:
            calls, reasoning, text = self._reason(content, request, notes)
        elif mode is Mode.DIRECT:
            answer = self._generate(content, request, "answer", DIRECT_TOKEN, notes)
            calls = [answer]
            reasoning, text = "", self._answer_text(answer, notes)
        else:
            one = self._generate(content, request, "auto", None, notes)
            calls = [one]
            reasoning, text = split_reply(one.text)
            reasoning = (one.reasoning.strip() + "\n" + reasoning).strip()
        truncated = calls[-1].finish == "length"
        if truncated:
            log.warning("answer cut at the output limit of %d tokens", request.max_answer_tokens)
        timings = {"request_s": time.perf_counter() - started, "jpeg_encode_s": encode_s}
        for call in calls:
            for key, value in call.timings.items():
                timings[key] = timings.get(key, 0.0) + value
        for note in notes:
            self._warn_once(note)
        return Reply(answer=text, reasoning=reasoning, prompt_tokens=calls[0].prompt_tokens,
                     output_tokens=sum(c.output_tokens for c in calls), truncated=truncated,
                     reused_tokens=calls[0].cached_tokens, timings=timings, notes=tuple(notes))

    def _reason(self, content: str | list[dict[str, Any]], request: Request, notes: list[str]
                ) -> tuple[list[Generated], str, str]:
        """Forced reasoning: the trace, then the answer after it; (calls, trace, answer)."""
        if request.on_text is not None:  # the server leaves the forced tags out
            request.on_text(THINK_OPEN)
        thought = self._generate(content, request, "reasoning", THINK_OPEN, notes)
        trace = _SPECIAL.sub("", thought.reasoning + thought.text)
        if request.on_text is not None:
            request.on_text(THINK_CLOSE)
        answer = self._generate(content, request, "answer", f"{THINK_OPEN}{trace}{THINK_CLOSE}",
                                notes)
        return [thought, answer], trace.strip(), self._answer_text(answer, notes)

    def _answer_text(self, answer: Generated, notes: list[str]) -> str:
        # As in-process, mode tokens inside the answer are skipped, not taken as a new trace.
        if not answer.text.strip() and answer.reasoning.strip():
            notes.append("the server returned the answer as reasoning_content: run it without "
                         "a reasoning parser (deskpilot splits the reasoning itself)")
        text = answer.text
        for token in (THINK_OPEN, THINK_CLOSE, DIRECT_TOKEN):
            text = text.replace(token, "")
        return text.strip()

    def _generate(self, content: str | list[dict[str, Any]], request: Request, phase: str,
                  prefix: str | None, notes: list[str]) -> Generated:
        """One chat completion: ``phase`` is "reasoning" (a trace after ``prefix``), "answer"
        (the constrained answer after ``prefix``) or "auto" (no prefix, the model's choice)."""
        budget = request.max_reasoning_tokens
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        body: dict[str, Any] = {
            "model": self.model, "messages": messages, "temperature": request.temperature,
            # The in-process sampler's settings (llama_cpp.server would default to a 1.1
            # repeat penalty, which JSON with repeated keys and digits does not want).
            "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0,
        }
        if prefix is not None:
            messages.append({"role": "assistant", "content": prefix})
            # vLLM continues the message only when asked; llama-server refuses a prefill when
            # the template supports thinking and it is on.
            body.update(continue_final_message=True, add_generation_prompt=False,
                        chat_template_kwargs={"enable_thinking": False})
        grammar = request.grammar
        if phase == "reasoning":
            body.update(max_tokens=budget + 2, stop=[THINK_CLOSE],
                        skip_special_tokens=False)  # vLLM: print </think> so the stop matches
            if self.constraint == "grammar":
                body["grammar"] = thought_grammar(budget)
        elif phase == "answer":
            body["max_tokens"] = request.max_answer_tokens
            if grammar is not None:
                self._constrain(body, grammar, notes)
        else:
            body["max_tokens"] = budget + request.max_answer_tokens + 2
            if grammar is not None and self.constraint == "grammar":
                body["grammar"] = auto_grammar(grammar, budget)
            elif grammar is not None and self.constraint == "json_schema":
                notes.append("auto mode: a JSON schema would forbid the reasoning trace, so "
                             "the answer was not constrained")
        if request.on_text is not None:
            body.update(stream=True, stream_options={"include_usage": True})
        log.debug("%s: %s call, max_tokens %d, %s", self._where, phase, body["max_tokens"],
                  "grammar" if "grammar" in body else
                  "json schema" if "response_format" in body else "unconstrained")
        return self._call(body, request.on_text)

    def _constrain(self, body: dict[str, Any], grammar: str, notes: list[str]) -> None:
        if self.constraint == "grammar":
            body["grammar"] = grammar
        elif self.constraint == "json_schema":
            schema = json_schema_for(grammar)
            if schema is None:
                notes.append("the answer's grammar has no JSON schema form, so the answer "
                             "was not constrained")
                return
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "answer", "schema": schema, "strict": True}}

    # ------------------------------------------------------------ HTTP with retries

    def _call(self, body: dict[str, Any], on_text: Callable[[str], None] | None) -> Generated:
        payload = json.dumps(body).encode()
        delivered = False
        deliver: Callable[[str], None] | None = None
        if on_text is not None:
            callback = on_text

            def deliver(piece: str) -> None:
                nonlocal delivered
                delivered = True
                callback(piece)

        last: Transient | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._attempt(payload, deliver)
            except Fatal as exc:
                raise self._failure(str(exc)) from None
            except Transient as exc:
                if delivered:
                    raise self._failure(f"{exc.what} after part of the reply was streamed"
                                        ) from None
                last = exc
                if attempt == self.max_attempts:
                    break
                delay = self._delay(attempt, exc)
                log.warning("%s: %s; attempt %d of %d in %.1f s", self._where, exc.what,
                            attempt + 1, self.max_attempts, delay)
                self._sleep(delay)
        assert last is not None
        times = f"{self.max_attempts} attempt{'s' if self.max_attempts > 1 else ''}"
        raise self._failure(f"{last.what} after {times}"
                            + (f": {last.detail}" if last.detail else ""))

    def _delay(self, attempt: int, exc: Transient) -> float:
        if exc.retry_after is not None:
            if exc.retry_after > self.max_retry_after_s:
                raise self._failure(
                    f"{exc.what}, and asked to retry after {exc.retry_after:g} s, longer than "
                    f"this client waits ({self.max_retry_after_s:g} s)")
            return exc.retry_after
        # Exponential backoff with jitter, so sessions that failed together do not retry in step.
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return base / 2 + self._rng.random() * base / 2

    def _attempt(self, payload: bytes,
                 on_text: Callable[[str], None] | None) -> Generated:
        conn, resp = self._post(payload, stream=on_text is not None)
        try:
            if on_text is not None:
                result = read_stream(resp, on_text)
                resp.read()  # the end of the chunked body, so the connection can be reused
            else:
                raw = resp.read(MAX_BODY_BYTES + 1)
                if len(raw) > MAX_BODY_BYTES:
                    raise Fatal(f"answered more than {MAX_BODY_BYTES} bytes")
                result = parse_completion(raw)
        except TimeoutError:
            conn.close()
            raise Transient(f"no reply within the read timeout of {self.read_timeout_s:g} s"
                            ) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise Transient(f"connection lost while reading the reply ({explain_error(exc)})"
                            ) from None
        except BaseException:
            conn.close()
            raise
        if resp.will_close or not resp.isclosed():  # only a fully read reply frees it
            conn.close()
        else:
            self._pool.give_back(conn)
        return result

    def _post(self, payload: bytes, *,
              stream: bool) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send the request; the open response when its status is 2xx."""
        headers = {"Content-Type": "application/json", "User-Agent": "deskpilot",
                   "Accept": "text/event-stream" if stream else "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        path = f"{self._endpoint.path}/chat/completions"
        for fresh in (False, True):
            conn, reused = self._pool.take(fresh=fresh)
            try:
                conn.request("POST", path, body=payload, headers=headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError) as exc:
                conn.close()
                if reused and not fresh:
                    continue  # a kept-alive connection the server had closed: one more, new
                raise Transient(f"connection lost ({explain_error(exc)})") from None
            except TimeoutError:
                conn.close()
                raise Transient(f"no reply within the read timeout of "
                                f"{self.read_timeout_s:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise Transient(f"connection failed ({explain_error(exc)})") from None
            if 200 <= resp.status < 300:
                return conn, resp
            refuse(conn, resp)
        raise AssertionError("unreachable: the second try uses a fresh connection")


    def _failure(self, what: str) -> RuntimeFailure:
        message = f"{self._where}: {what}"
        if self._api_key:  # a server that echoes the header must not put the key in our logs
            message = message.replace(self._api_key, "[api key]")
        return RuntimeFailure(message)

    def _warn_once(self, note: str) -> None:
        with self._warned_lock:
            if note in self._warned:
                return
            self._warned.add(note)
        log.warning("%s: %s", self._where, note)

    def close(self) -> None:
        """Close the kept-alive connections; later calls fail. Safe to call twice."""
        self._pool.close()


__all__ = ["CONSTRAINTS", "Constraint", "OpenAiRuntime"]
