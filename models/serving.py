"""What the OpenAI-compatible runtime sends, worked out without a server: the pure helpers.

models/openai.py is the client; this module holds what it computes before any network call, so
each piece can be read and tested on its own: the checked API root (:class:`Endpoint`,
:func:`parse_base_url`) and the API key from the environment; the image as a JPEG data URL and
the user turn split around it; the chat template that makes llama_cpp.server serve Phi-4-RV
(:func:`serving_template`); and the answer constraints, as llama.cpp GBNF (the reasoning
budget, the ``auto`` mode choice) or as the JSON schema of the same answers.
"""

from __future__ import annotations

import base64
import io
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deskpilot.models.prompt import DIRECT_TOKEN, IMAGE_MARKER, THINK_CLOSE, THINK_OPEN

if TYPE_CHECKING:
    from deskpilot.grounding.preprocess import ModelImage

API_KEY_VARIABLES = ("DESKPILOT_API_KEY", "OPENAI_API_KEY")
BASE_URL_VARIABLE = "DESKPILOT_BASE_URL"
# Quality 90 without chroma subsampling: screenshots are text and one-pixel lines, which lower
# quality rings and 4:2:0 smears across 2x2 pixels; PNG would be lossless but several times
# larger and slower to encode, and every step sends a fresh screenshot over the network.
JPEG_QUALITY = 90
_ANSWER_RULE = "deskpilot-answer"


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A checked API root: ``url`` as given (no trailing slash), and where to connect."""

    url: str
    scheme: str
    host: str
    port: int
    path: str

    @property
    def netloc(self) -> str:
        """``host:port``, for names and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_base_url(text: str) -> Endpoint:
    """Check an OpenAI API root such as ``http://127.0.0.1:8080/v1``; ValueError says why not."""
    url = text.strip().rstrip("/")
    example = "e.g. http://127.0.0.1:8080/v1"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"base URL {text!r} is malformed ({exc}); {example}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"base URL {text!r} must start with http:// or https://; {example}")
    if parts.username is not None or parts.password is not None:
        # Not echoed: it holds a password.
        raise ValueError("the base URL must not hold a user name or password; put the API key "
                         f"in ${API_KEY_VARIABLES[0]}")
    if not parts.hostname:
        raise ValueError(f"base URL {text!r} names no host; {example}")
    if parts.query or parts.fragment:
        raise ValueError(f"base URL {text!r} must be the API root, without ? or #; {example}")
    default_port = 443 if parts.scheme == "https" else 80
    return Endpoint(url=url, scheme=parts.scheme, host=parts.hostname,
                    port=port or default_port, path=parts.path)


def api_key_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    """The API key from ``$DESKPILOT_API_KEY``, else ``$OPENAI_API_KEY``; None when neither."""
    for name in API_KEY_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


# ---------------------------------------------------------------- request content


def jpeg_data_url(image: ModelImage, quality: int = JPEG_QUALITY) -> str:
    """The image as a ``data:image/jpeg;base64,...`` URL, at its own size (4:4:4 chroma)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image.rgb).save(buf, format="JPEG", quality=quality, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_content(prompt: str, image_url: str) -> list[dict[str, Any]]:
    """The user turn as text, image, text parts, split at the prompt's one ``<image>``."""
    if prompt.count(IMAGE_MARKER) != 1:
        raise ValueError(f"the prompt must hold {IMAGE_MARKER} exactly once with an image")
    before, _, after = prompt.partition(IMAGE_MARKER)
    parts: list[dict[str, Any]] = []
    if before := before.removesuffix("\n"):
        parts.append({"type": "text", "text": before})
    parts.append({"type": "image_url", "image_url": {"url": image_url}})
    if after := after.removeprefix("\n"):
        parts.append({"type": "text", "text": after})
    return parts


_SERVING_LOOP = (
    "{% for message in messages %}\n"
    "{% set content = message['content'] if message['content'] is string "
    "else message['content'] | map(attribute='text') | join('\\n') %}\n"
    "{% if message['role'] == 'user' %}\n"
    "{{ '<|im_start|>user<|im_sep|>' + content + '<|im_end|>' }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "<|im_start|>assistant<|im_sep|>\n"
    "{% if loop.last %}\n"
    "{{ content }}"
    "{% else %}\n"
    "{{ content + '<|im_end|>' }}\n"
    "{% endif %}\n"
    "{% endif %}\n"
    "{% endfor %}\n"
    "{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}\n"
    "{{ '<|im_start|>assistant<|im_sep|>' }}\n"
    "{% endif %}"
)


def serving_template(template: str) -> str:
    """Phi-4-RV's chat template, made servable by llama_cpp.server's ``mtmd`` handler.

    That handler gives the template the user content as a list of parts (the image as a text
    part holding mtmd's marker), and the shipped template joins content as a string, so every
    request with an image fails ("can only concatenate str (not "list") to str"); it also
    closes a final assistant message, so a mode switch cannot be prefilled. This keeps the
    template's fixed system turn, joins parts with a newline as llama-server does, and leaves a
    final assistant message open. Plain string conversations render exactly as before. Stamp
    it into a copy of the GGUF with ``gguf-new-metadata ... --chat-template-file`` (the gguf
    package; docs/scaling.md). llama-server and vLLM need none of this.
    """
    head, loop, _ = template.partition("{% for message in messages %}")
    if not loop or not head.startswith("<|im_start|>system<|im_sep|>"):
        raise ValueError("not a Phi-4-reasoning-vision chat template: expected a fixed "
                         "'<|im_start|>system<|im_sep|>' turn before the message loop")
    return head + _SERVING_LOOP


# ---------------------------------------------------------------- constraints


def thought_grammar(budget: int) -> str:
    """GBNF for a trace after a ``<think>`` prefill: at most ``budget`` tokens, then
    ``</think>`` (llama.cpp's token syntax: ``!<t>`` is any token but ``t``)."""
    body = f"(!{THINK_CLOSE}){{0,{budget}}} " if budget > 0 else ""
    return f"root ::= {body}{THINK_CLOSE}\n"


def auto_grammar(answer_grammar: str, budget: int) -> str:
    """The model's own choice of mode, then ``answer_grammar``: either ``<think>`` and a trace
    of at most ``budget`` tokens and ``</think>``, or ``<|dummy_84|>`` (as in-process)."""
    if re.search(rf"(?m)^\s*{_ANSWER_RULE}\s*::=", answer_grammar):
        raise ValueError(f"the grammar already defines {_ANSWER_RULE}")
    trace = f"(!{THINK_CLOSE}){{0,{budget}}} " if budget > 0 else ""
    return (f"root ::= ({THINK_OPEN} {trace}{THINK_CLOSE} | {DIRECT_TOKEN}) {_ANSWER_RULE}\n"
            + rename_rule(answer_grammar, "root", _ANSWER_RULE))


def rename_rule(grammar: str, old: str, new: str) -> str:
    """``grammar`` with every use of rule name ``old`` renamed to ``new`` (strings, character
    classes, tokens and comments are left alone)."""
    out: list[str] = []
    i, n = 0, len(grammar)
    closing = {'"': '"', "[": "]", "<": ">"}
    while i < n:
        c = grammar[i]
        if c == "#":
            j = grammar.find("\n", i)
            j = n if j < 0 else j
        elif c in closing:
            j = i + 1
            while j < n and grammar[j] != closing[c]:
                j += 2 if grammar[j] == "\\" else 1
            j = min(n, j + 1)
        elif c.isalnum() or c in "-_":
            j = i
            while j < n and (grammar[j].isalnum() or grammar[j] in "-_"):
                j += 1
            out.append(new if grammar[i:j] == old else grammar[i:j])
            i = j
            continue
        else:
            j = i + 1
        out.append(grammar[i:j])
        i = j
    return "".join(out)


_ACTION_ROOT = re.compile(r"root ::= ws \(([a-z_| -]+)\)\n")


def json_schema_for(grammar: str) -> dict[str, Any] | None:
    """The JSON schema of the answers ``grammar`` admits, for the grammars deskpilot makes: one
    or more kinds of action (actions.schema), a query's value (models.asks) or a grounding
    box (models.grounder). It is the
    pydantic models' own schema, so it bounds numbers by value, not by digits as the grammar
    does. None for any other grammar, such as a check's bare ``yes``/``no`` (not JSON)."""
    from deskpilot.actions.schema import action_grammar
    from deskpilot.actions.types import ACTION_TYPES, tag_of
    from deskpilot.models.asks import MAX_VALUE_CHARS, VALUE_GRAMMAR
    from deskpilot.models.grounder import BOX_GRAMMAR

    if grammar == BOX_GRAMMAR:  # the grounding call's bare [x1, y1, x2, y2]
        return {"type": "array", "minItems": 4, "maxItems": 4,
                "items": {"type": "number", "minimum": 0, "maximum": 1}}
    if grammar == VALUE_GRAMMAR:
        return {"type": "object", "additionalProperties": False, "required": ["value"],
                "properties": {"value": {"type": "string", "maxLength": MAX_VALUE_CHARS}}}
    match = _ACTION_ROOT.match(grammar)
    if match is None:
        return None
    tags = {name.strip().replace("-", "_") for name in match.group(1).split("|")}
    try:
        if action_grammar(tags, described=True) == grammar:  # the planner's form
            schemas = [_described_schema(cls) for cls in ACTION_TYPES if tag_of(cls) in tags]
            return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        if action_grammar(tags) != grammar:  # only a grammar action_grammar made exactly
            return None
    except ValueError:
        return None
    schemas = [cls.model_json_schema() for cls in ACTION_TYPES if tag_of(cls) in tags]
    defs: dict[str, Any] = {}
    for schema in schemas:
        defs.update(schema.pop("$defs", {}))
    result: dict[str, Any] = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    if defs:
        result["$defs"] = defs
    return result


def _described_schema(cls: type) -> dict[str, Any]:
    """The JSON schema of one action in the planner's form (targets in words, no boxes),
    from the same field specs as its grammar."""
    from deskpilot.actions.schema import fields_of

    properties: dict[str, Any] = {}
    for spec in fields_of(cls, described=True):
        match spec.kind:
            case "literal":
                prop: dict[str, Any] = {"enum": list(spec.choices)}
            case "str":
                prop = {"type": "string", "minLength": spec.min_len}
                if spec.max_len is not None:
                    prop["maxLength"] = spec.max_len
            case _:
                prop = {"type": "integer" if spec.kind == "int" else "number",
                        "minimum": spec.low, "maximum": spec.high}
        properties[spec.name] = prop
    required = [spec.name for spec in fields_of(cls, described=True) if spec.required]
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": required}


__all__ = ["API_KEY_VARIABLES", "BASE_URL_VARIABLE", "JPEG_QUALITY", "Endpoint",
           "api_key_from_env", "auto_grammar", "image_content", "jpeg_data_url",
           "json_schema_for", "parse_base_url", "rename_rule", "serving_template",
           "thought_grammar"]
