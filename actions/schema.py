"""Derive the prompt's action reference and the decoding grammar from the action types.

Both are generated from the same field introspection, so what the model is told, what it can
emit, and what the parser accepts stay one thing. The grammar bounds every number by its digit
count (no exponents, so no ``35124e99``) and every string by its length, which also bounds the
length of any reply.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass

from annotated_types import Ge, Le, MaxLen, MinLen

from deskpilot.actions.types import ACTION_TYPES, BOX_TO_TARGET, MAX_TARGET_CHARS, tag_of

_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an action as the grammar and the prompt see it."""

    name: str
    kind: str  # "literal", "str", "int", "float", "box"
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    min_len: int = 0
    max_len: int | None = None
    required: bool = True
    default: object = None


def _bounds(metadata: Iterable[object]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in metadata:
        if isinstance(m, Ge):
            out["low"] = float(m.ge)  # type: ignore[arg-type]
        elif isinstance(m, Le):
            out["high"] = float(m.le)  # type: ignore[arg-type]
        elif isinstance(m, MaxLen):
            out["max_len"] = m.max_length
        elif isinstance(m, MinLen):
            out["min_len"] = m.min_length
    return out


def _spec(name: str, annotation: object, metadata: list[object], required: bool,
          default: object) -> FieldSpec:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return FieldSpec(name, "literal", tuple(typing.get_args(annotation)), required=required,
                         default=default)
    if origin is tuple:
        return FieldSpec(name, "box", required=required, default=default)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _spec(name, base, [*metadata, *extra], required, default)
    if isinstance(annotation, types.UnionType):
        raise TypeError(f"field {name}: unions are not supported in actions")
    kinds = {str: "str", int: "int", float: "float"}
    if annotation not in kinds:
        raise TypeError(f"field {name}: unsupported type {annotation!r}")
    b = _bounds(metadata)
    return FieldSpec(name, kinds[annotation], low=b.get("low"), high=b.get("high"),
                     min_len=int(b.get("min_len", 0)),
                     max_len=int(b["max_len"]) if "max_len" in b else None,
                     required=required, default=default)


def fields_of(cls: type, *, described: bool = False) -> tuple[FieldSpec, ...]:
    """The fields of an action class, ``action`` first, then in declaration order.

    ``described``: the planner's form, where each box is replaced by a required description
    of its target (``box`` by ``target``, ``to_box`` by ``to_target``) for a grounding call
    to locate.
    """
    specs = []
    for name, info in cls.model_fields.items():  # type: ignore[attr-defined]
        spec = _spec(name, info.annotation, list(info.metadata), info.is_required(),
                     None if info.is_required() else info.default)
        if described and spec.kind == "box":
            if BOX_TO_TARGET[name] in cls.model_fields:  # type: ignore[attr-defined]
                continue  # the description field is declared already (``target``)
            spec = FieldSpec(BOX_TO_TARGET[name], "str", min_len=1, max_len=MAX_TARGET_CHARS)
        elif described and name in BOX_TO_TARGET.values():
            spec = FieldSpec(name, "str", min_len=1, max_len=MAX_TARGET_CHARS)
        specs.append(spec)
    specs.sort(key=lambda s: s.name != "action")
    return tuple(specs)


def _classes(allowed: Iterable[str] | None) -> list[type]:
    if allowed is None:
        return list(ACTION_TYPES)
    wanted = set(allowed)
    chosen = [c for c in ACTION_TYPES if tag_of(c) in wanted]
    unknown = wanted - {tag_of(c) for c in chosen}
    if unknown:
        raise ValueError(f"unknown action names: {sorted(unknown)}")
    return chosen


# ---------------------------------------------------------------- prompt reference

def _describe_field(spec: FieldSpec) -> str:
    match spec.kind:
        case "literal" if spec.name == "action":
            return f'"action": "{spec.choices[0]}"'
        case "literal":
            value = " | ".join(f'"{c}"' for c in spec.choices)
        case "box":
            value = "[x1, y1, x2, y2]"
        case "int":
            value = f"integer {spec.low:g}-{spec.high:g}"
        case "float":
            value = f"number {spec.low:g}-{spec.high:g}"
        case _:
            value = f"string (max {spec.max_len} chars)" if spec.max_len else "string"
    return f'"{spec.name}": {value}'


def describe_actions(allowed: Iterable[str] | None = None, *, described: bool = False) -> str:
    """One line per action for the prompt: its JSON shape and what it does."""
    lines = []
    for cls in _classes(allowed):
        body = ", ".join(_describe_field(s) for s in fields_of(cls, described=described))
        doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
        if described:  # the docstrings speak of boxes; the planner speaks of targets
            doc = re.sub(r"\b(?:to_)?box\b", lambda m: BOX_TO_TARGET[m.group(0)],
                         doc.replace("the centre of ", ""))
        lines.append(f"{{{body}}}  — {doc}")
    return "\n".join(lines)


# ---------------------------------------------------------------- GBNF grammar

_COMMON = r'''
ws ::= " "?
char ::= [^"\\\x00-\x1f\x7f] | "\\" ["\\/nt]
norm ::= "0" ("." [0-9]{1,4})? | "1" ("." "0"{1,4})?
box ::= "[" ws norm ws "," ws norm ws "," ws norm ws "," ws norm ws "]"
'''


def _digits(high: float) -> int:
    return len(str(int(abs(high))))


def _whole_rule(low: int, high: int) -> str:
    """Whole numbers in [low, high] (low >= 0), as JSON writes them: no sign, no leading zero."""
    if high - low <= 100:
        return "(" + " | ".join(f'"{v}"' for v in range(low, high + 1)) + ")"
    return f'("0" | [1-9] [0-9]{{0,{_digits(high) - 1}}})'


def _number_rule(spec: FieldSpec) -> str:
    low, high = spec.low, spec.high
    if low is None or high is None or low < 0:
        raise TypeError(f"field {spec.name}: the grammar needs bounds of 0 or more")
    whole = _whole_rule(int(low), int(high))
    if spec.kind == "int":
        return whole
    return f'{whole} ("." [0-9]{{1,{_DECIMALS}}})?'


def _value_rule(spec: FieldSpec) -> str:
    match spec.kind:
        case "literal":
            return " | ".join(f'"\\"{c}\\""' for c in spec.choices)
        case "box":
            return "box"
        case "str":
            high = spec.max_len if spec.max_len is not None else 200
            return f'"\\"" char{{{spec.min_len},{high}}} "\\""'
        case _:
            return _number_rule(spec)


def action_grammar(allowed: Iterable[str] | None = None, *, described: bool = False) -> str:
    """GBNF for one JSON action of the allowed kinds (all kinds by default); ``described``:
    the planner's form, targets in words instead of boxes."""
    rules = []
    names = []
    for cls in _classes(allowed):
        rule = tag_of(cls).replace("_", "-")
        names.append(rule)
        parts = []
        for i, spec in enumerate(fields_of(cls, described=described)):
            sep = "" if i == 0 else ' "," ws '
            value_rule = f"{rule}-{spec.name.replace('_', '-')}"
            rules.append(f"{value_rule} ::= {_value_rule(spec)}")
            parts.append(f'{sep}"\\"{spec.name}\\":" ws {value_rule}')
        rules.append(f'{rule} ::= "{{" ws {" ".join(parts)} ws "}}"')
    root = f"root ::= ws ({' | '.join(names)})"
    return "\n".join([root, *rules]) + _COMMON


def max_answer_chars(allowed: Iterable[str] | None = None, *, described: bool = False) -> int:
    """An upper bound on the length of any answer the grammar admits (for the output limit)."""
    longest = 0
    for cls in _classes(allowed):
        size = 4 + len(tag_of(cls))
        for spec in fields_of(cls, described=described):
            size += len(spec.name) + 6
            match spec.kind:
                case "literal":
                    size += max(len(c) for c in spec.choices) + 2
                case "box":
                    size += 4 * (_DECIMALS + 2) + 8
                case "str":
                    # An escape is two characters for one.
                    size += 2 * (spec.max_len or 200) + 2
                case _:
                    size += 24
        longest = max(longest, size)
    return longest


__all__ = ["FieldSpec", "action_grammar", "describe_actions", "fields_of",
           "max_answer_chars"]
