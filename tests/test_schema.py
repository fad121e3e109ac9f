"""The action reference and the grammar come from the same types as the parser."""

from __future__ import annotations

import re

import pytest

from deskpilot.actions.schema import action_grammar, describe_actions, fields_of, max_answer_chars
from deskpilot.actions.types import ACTION_NAMES, ACTION_TYPES, Click


def test_every_action_is_described_once() -> None:
    text = describe_actions()
    for name in ACTION_NAMES:
        assert text.count(f'"action": "{name}"') == 1


def test_action_field_comes_first() -> None:
    for cls in ACTION_TYPES:
        assert fields_of(cls)[0].name == "action"


def test_grammar_has_a_rule_per_allowed_action() -> None:
    g = action_grammar(["click", "done"])
    assert g.startswith("root ::= ws (click | done)")
    assert "type ::=" not in g


def test_unknown_allowed_action_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        action_grammar(["click", "explode"])


def test_grammar_bounds_numbers_and_strings() -> None:
    g = action_grammar()
    # No exponent anywhere, digits and string lengths bounded.
    assert "e" not in re.sub(r'"[^"]*"|[a-z-]+', "", g)
    assert "char{0,80}" in g and "char{1,500}" in g
    assert 'click-clicks ::= ("1" | "2" | "3")' in g
    # Small integer ranges are spelled out exactly, so no leading zeros and no 26.
    assert '"24" | "25")' in g and '"26"' not in g.split("scroll-amount ::=")[1].split("\n")[0]
    assert '"0" |' in g.split("wait-seconds ::=")[1]


def test_wide_integer_ranges_have_no_leading_zeros() -> None:
    from deskpilot.actions.schema import FieldSpec, _number_rule

    rule = _number_rule(FieldSpec("n", "int", low=0, high=5000))
    assert rule == '("0" | [1-9] [0-9]{0,3})'


def test_answer_bound_covers_the_longest_answer() -> None:
    longest_click = ('{"action": "click", "target": "' + "\\\\" * 80 + '", "box": '
                     '[0.0000, 0.0000, 1.0000, 1.0000], "button": "middle", "clicks": 3}')
    assert len(longest_click) <= max_answer_chars(["click"])
    assert Click.model_fields["target"].metadata  # the bound comes from the type itself
