"""Expressions and parameter patterns cannot stall the process: arithmetic, repetition and
result size are bounded, patterns match in linear time, outputs are rendered once."""

from __future__ import annotations

import time

import pytest

from lamplighter.core.errors import ValidationFailed
from lamplighter.selfservice import expressions, runs, templates

CONTEXT = expressions.expression_context({"text": "a" * 1000, "n": 3}, {}, {"id": 1})


@pytest.mark.parametrize(
    "expression",
    [
        "9**(9**7)",
        "'a' * 10**8",
        "[1] * 10**9",
        "[parameters.text] * 1000",
        "10**300 * 10**300",
        "'x'|center(100000000)",
        "'a'.ljust(10**8)",
        "parameters.text.replace('', parameters.text)",
        "'%0999999999d' % 1",
        "'{:>999999999}'.format(1)",
    ],
)
def test_an_expression_over_the_bounds_fails_quickly_naming_where(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(expressions.ExpressionError) as caught:
        expressions.evaluate(expression, CONTEXT, where="output.links.0.url")
    assert time.perf_counter() - started < 1.0
    assert caught.value.detail.startswith("output.links.0.url: ")
    assert "over the bounds" in caught.value.detail


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2**100", 2**100),
        ("parameters.n * 2 + 1", 7),
        ("'ab' * 3", "ababab"),
        ("'a,b'.split(',')|join('-')", "a-b"),
        ("'x'|center(5)", "  x  "),
    ],
)
def test_ordinary_expressions_still_work(expression: str, value: object) -> None:
    assert expressions.evaluate(expression, CONTEXT, where="w") == value


def test_a_backtracking_pattern_validates_in_linear_time() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}
    started = time.perf_counter()
    with pytest.raises(ValidationFailed) as caught:
        runs.validate_parameters(schema, {"name": "a" * 30 + "!"})
    assert time.perf_counter() - started < 0.5
    assert caught.value.errors[0].field == "parameters.name"
    assert runs.validate_parameters(schema, {"name": "aaaa"}) == {"name": "aaaa"}


def test_pattern_properties_match_in_linear_time() -> None:
    schema = {
        "type": "object",
        "properties": {
            "labels": {"type": "object", "patternProperties": {"^(a+)+$": {"type": "integer"}}}
        },
    }
    started = time.perf_counter()
    runs.validate_parameters(schema, {"labels": {"a" * 30 + "!": "text"}})
    with pytest.raises(ValidationFailed):
        runs.validate_parameters(schema, {"labels": {"aaa": "text"}})
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        (
            {"type": "object", "properties": {"name": {"type": "string", "pattern": r"(a)\1"}}},
            "parameters.properties.name.pattern",
        ),
        (
            {"type": "object", "patternProperties": {"^(?=x)": {"type": "string"}}},
            "parameters.patternProperties.^(?=x)",
        ),
    ],
)
def test_a_pattern_that_cannot_match_in_linear_time_is_refused_when_saved(
    schema: dict[str, object], field: str
) -> None:
    definition = {
        "name": "p",
        "title": "P",
        "owner": "payments",
        "parameters": schema,
        "steps": [{"id": "s", "action": "catalog.register", "input": {}}],
    }
    problems = templates._Problems()
    templates._check_parameters(definition["parameters"], problems)
    fields = {p.field: p.reason for p in problems.errors}
    assert field in fields
    assert "linear time" in fields[field]
