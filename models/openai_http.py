"""The wire side of the OpenAI-compatible runtime: connections, replies, and failures sorted.

models/openai.py decides what to ask and when to try again; this module holds the stdlib
``http.client`` pieces it does that with, so the runtime reads as a client and this as plumbing:
a thread-safe pool of keep-alive connections (:class:`Pool`), a chat completion read into a
:class:`Generated` record whether it came whole (:func:`parse_completion`) or as server-sent
events (:func:`read_stream`), and the sorting of failures into :class:`Transient` (worth another
attempt, with any Retry-After) and :class:`Fatal` (another attempt would repeat it), with short
snippets of what the server said. Messages here lack the URL and model; the runtime adds them.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from deskpilot.actions.text import shorten
from deskpilot.models.serving import Endpoint

MAX_BODY_BYTES = 16 << 20  # a chat completion is kilobytes; more is not a reply to read
_SNIPPET_CHARS = 200
_MAX_IDLE_CONNECTIONS = 8


# ---------------------------------------------------------------- failures


class Transient(Exception):
    """A failure worth another attempt: connection, timeout, HTTP 408, 429 or 5xx."""

    def __init__(self, what: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.detail = detail
        self.retry_after = retry_after


class Fatal(Exception):
    """A failure that another attempt would repeat (its message lacks the URL and model)."""


def explain_error(exc: BaseException) -> str:
    """A short, readable name for a connection error."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"host not found ({exc.strerror})"
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _snippet(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    text = re.sub(r"\s+", " ", text).strip()
    return shorten(text, _SNIPPET_CHARS + 1)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def refuse(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
    """Close ``conn`` and raise for its non-2xx reply: Transient for 408, 429, 5xx, else Fatal."""
    try:
        raw = resp.read(64 << 10)
    except (OSError, http.client.HTTPException):
        raw = b""
    conn.close()
    status, detail = resp.status, _snippet(raw)
    if status in (408, 429) or status >= 500:
        raise Transient(f"returned HTTP {status}", detail,
                        _retry_after(resp.getheader("Retry-After")))
    hint = {401: " (check $DESKPILOT_API_KEY)", 403: " (check $DESKPILOT_API_KEY)",
            404: " (is the base URL the API root, such as http://host:8080/v1, and the "
                 "model name one the server serves?)"}.get(status, "")
    raise Fatal(f"returned HTTP {status}{hint}: {detail}")


# ---------------------------------------------------------------- connections


class Pool:
    """Keep-alive connections to one server; each call has one to itself (thread-safe)."""

    def __init__(self, endpoint: Endpoint, connect_timeout_s: float,
                 read_timeout_s: float) -> None:
        self._endpoint = endpoint
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.closed = False

    def take(self, *, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was used before (it may have been closed since)."""
        with self._lock:
            if self.closed:
                raise Fatal("the runtime is closed")
            if self._idle and not fresh:
                return self._idle.pop(), True
        e = self._endpoint
        conn: http.client.HTTPConnection
        if e.scheme == "https":
            conn = http.client.HTTPSConnection(e.host, e.port, timeout=self._connect_timeout_s,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(e.host, e.port, timeout=self._connect_timeout_s)
        try:
            conn.connect()
            conn.sock.settimeout(self._read_timeout_s)  # from here on, the wait for replies
        except ssl.SSLError as exc:  # a certificate problem does not go away on its own
            conn.close()
            raise Fatal(f"TLS failed ({exc.reason or exc})") from None
        except TimeoutError:
            conn.close()
            raise Transient(f"no connection within {self._connect_timeout_s:g} s") from None
        except OSError as exc:
            conn.close()
            raise Transient(explain_error(exc)) from None
        return conn, False

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        """Keep a fully read connection for the next call (close it when the pool is full)."""
        with self._lock:
            if not self.closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# ---------------------------------------------------------------- replies


@dataclass(slots=True)
class Generated:
    """What one chat completion call produced."""

    text: str = ""
    reasoning: str = ""  # what the server itself split off as reasoning, if it does that
    finish: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _take_usage(out: Generated, data: Mapping[str, Any]) -> None:
    """Token counts from ``usage`` and llama-server's ``timings``, when present."""
    usage = data.get("usage")
    if isinstance(usage, dict):
        out.prompt_tokens = _int(usage.get("prompt_tokens"))
        out.output_tokens = _int(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            out.cached_tokens = _int(details.get("cached_tokens"))
    timings = data.get("timings")
    if isinstance(timings, dict):
        for key, name in (("prompt_ms", "prefill_s"), ("predicted_ms", "decode_s")):
            value = timings.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.timings[name] = float(value) / 1000
        out.cached_tokens = out.cached_tokens or _int(timings.get("cache_n"))


def parse_completion(raw: bytes) -> Generated:
    """A non-streamed chat completion; Fatal when the body is not one."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        hint = ", a web page: is the base URL the API root?" if raw.lstrip()[:1] == b"<" else ""
        raise Fatal(f"answered malformed JSON ({exc}{hint})") from None
    if not isinstance(data, dict):
        raise Fatal("answered JSON that is not a chat completion")
    if "error" in data:
        raise Fatal(f"answered an error: {_snippet(json.dumps(data['error']).encode())}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise Fatal("reply had no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise Fatal("reply's choice had no message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise Fatal("reply's message content is not text")
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    out = Generated(text=content or "", reasoning=reasoning if isinstance(reasoning, str) else "",
                    finish=choice.get("finish_reason"))
    _take_usage(out, data)
    return out


def _sse_events(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON ``data`` of each server-sent event, until ``[DONE]`` or the end of the body."""
    lines: list[str] = []
    total = 0
    while True:
        raw = resp.readline(MAX_BODY_BYTES)
        total += len(raw)
        if total > MAX_BODY_BYTES:
            raise Fatal(f"streamed more than {MAX_BODY_BYTES} bytes")
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if raw and line.startswith(":"):  # a comment (keep-alive ping)
            continue
        if raw and line:
            name, _, value = line.partition(":")
            if name == "data":
                lines.append(value.removeprefix(" "))
            continue
        if lines:  # a blank line (or the end) closes an event
            data, lines = "\n".join(lines), []
            if data.strip() == "[DONE]":
                return
            try:
                event = json.loads(data)
            except json.JSONDecodeError as exc:
                raise Fatal(f"streamed malformed JSON ({exc})") from None
            if not isinstance(event, dict):
                raise Fatal("streamed JSON that is not a chat completion chunk")
            yield event
        if not raw:
            return


def read_stream(resp: http.client.HTTPResponse,
                on_text: Callable[[str], None]) -> Generated:
    """A streamed chat completion, each piece of text passed to ``on_text`` as it arrives."""
    out = Generated()
    text: list[str] = []
    reasoning: list[str] = []
    for event in _sse_events(resp):
        if "error" in event:
            raise Fatal(f"streamed an error: {_snippet(json.dumps(event['error']).encode())}")
        _take_usage(out, event)
        choices = event.get("choices")
        if not isinstance(choices, list):
            raise Fatal("stream chunk had no choices")
        if not choices:  # the usage chunk
            continue
        choice = choices[0] if isinstance(choices[0], dict) else {}
        delta = choice.get("delta") or {}
        for key, sink in (("reasoning_content", reasoning), ("reasoning", reasoning),
                          ("content", text)):
            piece = delta.get(key) if isinstance(delta, dict) else None
            if isinstance(piece, str) and piece:
                sink.append(piece)
                on_text(piece)
        if choice.get("finish_reason"):
            out.finish = choice["finish_reason"]
    if out.finish is None:
        raise Transient("the stream ended before the reply did (the server closed it "
                        "mid-reply: its own log says why, e.g. a prompt over its context)")
    out.text, out.reasoning = "".join(text), "".join(reasoning)
    return out


__all__ = ["MAX_BODY_BYTES", "Fatal", "Generated", "Pool", "Transient", "explain_error",
           "parse_completion", "read_stream", "refuse"]
