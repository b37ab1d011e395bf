"""Label matchers in Alertmanager's syntax, for routing rules and silences.

``alertname=HighLatency``, ``env!=dev``, ``instance=~"web-.*"``, ``severity!~"info|warning"``.
Regular expressions are anchored like Alertmanager's (the whole value must match) and run
with RE2, so a user's pattern matches in time linear in the label value whatever it is
(``selfservice.patterns``). A label that is absent matches as the empty string, as in
Alertmanager: ``team=""`` selects alerts without a team.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lamplighter.selfservice.patterns import PatternError, compile_pattern

MAX_MATCHERS = 20
MAX_MATCHER_CHARS = 1024
_SYNTAX = re.compile(r"^\s*([A-Za-z_@][A-Za-z0-9_.\-@]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)


class MatcherError(ValueError):
    """A matcher that cannot be read; the message says why."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = compile_pattern(f"^(?:{self.value})$").search(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse(text: Any) -> Matcher:
    """One matcher from its text; MatcherError naming what is wrong."""
    if not isinstance(text, str):
        raise MatcherError("a matcher is text such as alertname=HighLatency")
    if len(text) > MAX_MATCHER_CHARS:
        raise MatcherError(f"a matcher is at most {MAX_MATCHER_CHARS} characters")
    found = _SYNTAX.match(text)
    if found is None:
        raise MatcherError(
            "a matcher is a label name, one of = != =~ !~ and a value, e.g. severity=critical"
        )
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if op in ("=~", "!~"):
        try:
            compile_pattern(f"^(?:{value})$")
        except PatternError as exc:
            raise MatcherError(f"the regular expression cannot be used: {exc}") from None
    return Matcher(name=name, op=op, value=value)


def parse_all(texts: Sequence[Any], field: str) -> tuple[list[Matcher], list[tuple[str, str]]]:
    """Every matcher of a list, and the problems as (field path, reason)."""
    problems: list[tuple[str, str]] = []
    if len(texts) > MAX_MATCHERS:
        return [], [(field, f"at most {MAX_MATCHERS} matchers")]
    parsed: list[Matcher] = []
    for index, text in enumerate(texts):
        try:
            parsed.append(parse(text))
        except MatcherError as exc:
            problems.append((f"{field}[{index}]", str(exc)))
    return parsed, problems


def all_match(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(matcher.matches(labels) for matcher in matchers)
