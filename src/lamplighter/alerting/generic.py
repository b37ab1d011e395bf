"""Generic JSON webhooks mapped to alerts with the self-service ``${{ }}`` expressions.

A mapping says, field by field, how to read an alert out of whatever JSON a tool posts. Each
value is text in which ``${{ … }}`` expressions are evaluated by
:mod:`lamplighter.selfservice.expressions` (the same sandbox, the same bounds in time and
memory: no second expression language). The posted body is read as ``body``, e.g. for Grafana
alerting::

    {
        "summary": "${{ body.title }}",
        "severity": "${{ body.commonLabels.severity }}",
        "dedup_key": "${{ body.groupKey }}",
        "source": "grafana",
        "action": "${{ body.status }}",
        "labels": {"team": "${{ body.commonLabels.team }}"},
        "annotations": {"runbook_url": "${{ body.commonAnnotations.runbook_url }}"},
    }

A value that is one whole expression keeps its type (``null`` leaves a label out); a value
without ``${{ }}`` is a constant. ``check_mapping`` is run when a mapping is saved,
``map_body`` on every post; both name the field that is wrong.
"""

from __future__ import annotations

import hashlib
from collections import abc
from dataclasses import dataclass, field
from typing import Any

import orjson

from lamplighter.alerting.intake import (
    DEFAULT_SEVERITY,
    MAX_DEDUP_KEY_CHARS,
    MAX_SOURCE_CHARS,
    MAX_SUMMARY_CHARS,
    Action,
    FormatError,
    IncomingAlert,
    PayloadTooLarge,
    clip,
    runbook_from,
    severity_from_text,
)
from lamplighter.core.errors import FieldError
from lamplighter.selfservice.expressions import (
    BODY_NAMES,
    EXPRESSION_RE,
    ExpressionError,
    body_context,
    check_expression,
    expressions_in,
    render,
)

MAX_BODY_BYTES = 512 * 1024
TEXT_FIELDS = ("summary", "severity", "dedup_key", "source", "action")
PAIR_FIELDS = ("labels", "annotations")
FIELDS = (*TEXT_FIELDS, *PAIR_FIELDS)
MAX_PAIRS = 64
MAX_NAME_CHARS = 256
MAX_LABEL_VALUE_CHARS = 2048
MAX_ANNOTATION_VALUE_CHARS = 16 * 1024
DEFAULT_SOURCE = "webhook"

# What tools call the three actions (Grafana "firing"/"resolved", Datadog "Triggered"/
# "Recovered", Zabbix "PROBLEM"/"OK" …).
_ACTION_WORDS: dict[str, Action] = {
    **dict.fromkeys(
        ("trigger", "triggered", "firing", "alerting", "alert", "open", "opened", "problem",
         "error", "warn", "warning", "critical", "re-triggered", "retriggered", "no data"),
        "trigger",
    ),
    **dict.fromkeys(("acknowledge", "acknowledged", "ack", "acked"), "acknowledge"),
    **dict.fromkeys(
        ("resolve", "resolved", "recovered", "recovery", "ok", "normal", "closed", "close",
         "cleared", "clear", "success"),
        "resolve",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Mapping:
    """How to read an alert out of a posted JSON body; every value may hold ``${{ }}``."""

    summary: str
    severity: str | None = None
    dedup_key: str | None = None  # absent: a hash of summary, source and labels
    source: str | None = None
    action: str | None = None  # absent: every post triggers
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def check_mapping(raw: Any) -> list[FieldError]:
    """Why a mapping as saved (a JSON object) cannot be used; empty when it can."""
    if not isinstance(raw, abc.Mapping):
        return [FieldError("mapping", "must be an object of fields to expressions")]
    problems: list[FieldError] = []
    for name in raw:
        if name not in FIELDS:
            problems.append(FieldError(str(name), f"unknown field (fields: {', '.join(FIELDS)})"))
    if not isinstance(raw.get("summary"), str) or not raw["summary"].strip():
        problems.append(FieldError("summary", "required: the text the alert is paged with"))
    for name in TEXT_FIELDS:
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(FieldError(name, "must be text, optionally with ${{ }} expressions"))
        else:
            problems.extend(_expression_problems(name, value))
    for name in PAIR_FIELDS:
        pairs = raw.get(name)
        if pairs is None:
            continue
        if not isinstance(pairs, abc.Mapping):
            problems.append(FieldError(name, "must be an object of names to expressions"))
            continue
        if len(pairs) > MAX_PAIRS:
            problems.append(FieldError(name, f"{len(pairs)} entries; at most {MAX_PAIRS}"))
        for key, value in pairs.items():
            where = f"{name}.{key}"
            if not isinstance(key, str) or not key.strip() or len(key) > MAX_NAME_CHARS:
                problems.append(FieldError(where, f"a name of 1 to {MAX_NAME_CHARS} characters"))
            elif not isinstance(value, str):
                problems.append(FieldError(where, "must be text, optionally with ${{ }}"))
            else:
                problems.extend(_expression_problems(where, value))
    return problems


def parse_mapping(raw: Any) -> Mapping:
    """A saved mapping as a :class:`Mapping`; raise FormatError with every problem."""
    problems = check_mapping(raw)
    if problems:
        raise FormatError([(problem.field, problem.reason) for problem in problems])
    return Mapping(
        summary=raw["summary"],
        severity=raw.get("severity"),
        dedup_key=raw.get("dedup_key"),
        source=raw.get("source"),
        action=raw.get("action"),
        labels=dict(raw.get("labels") or {}),
        annotations=dict(raw.get("annotations") or {}),
    )


def parse_body(body: bytes) -> Any:
    """The posted JSON; raise FormatError (PayloadTooLarge over 512 KB) when it is not."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            [("body", f"the body is {len(body):,} bytes; at most {MAX_BODY_BYTES:,}")]
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FormatError([("body", f"not JSON: {exc}")]) from None


def map_body(mapping: Mapping, body: Any) -> IncomingAlert:
    """Read one alert out of a posted body; raise FormatError naming each field that failed."""
    if not isinstance(body, dict):
        raise FormatError([("body", "must be a JSON object")])
    context = body_context(body)
    errors: list[tuple[str, str]] = []

    def value_of(where: str, template: str | None) -> Any:
        if template is None:
            return None
        try:
            return render(template, context, where=where)
        except ExpressionError as exc:
            errors.append((where, exc.errors[0].reason if exc.errors else exc.detail))
            return None

    summary = _as_text(value_of("summary", mapping.summary)).strip()
    if not summary and not any(path == "summary" for path, _ in errors):
        errors.append(("summary", f"{mapping.summary!r} gave no text for this body"))
    severity_text = value_of("severity", mapping.severity)
    source = _as_text(value_of("source", mapping.source)).strip() or DEFAULT_SOURCE
    action: Action = "trigger"
    if mapping.action is not None:
        action_value = _as_text(value_of("action", mapping.action))
        known = _ACTION_WORDS.get(action_value.strip().lower())
        if known is not None:
            action = known
        elif not any(path == "action" for path, _ in errors):
            errors.append(
                (
                    "action",
                    f"{action_value[:64]!r} is not an action "
                    "(trigger, acknowledge or resolve, or a word for one such as firing, "
                    "resolved, ok)",
                )
            )
    labels = _pairs("labels", mapping.labels, value_of, MAX_LABEL_VALUE_CHARS)
    annotations = _pairs("annotations", mapping.annotations, value_of, MAX_ANNOTATION_VALUE_CHARS)
    dedup_key = _as_text(value_of("dedup_key", mapping.dedup_key)).strip()
    if errors:
        raise FormatError(errors)
    if not dedup_key:
        dedup_key = _fingerprint(summary, source, labels)
    elif len(dedup_key) > MAX_DEDUP_KEY_CHARS:
        # A long key hashed rather than cut, so that two keys sharing a prefix stay distinct.
        dedup_key = "sha256:" + hashlib.sha256(dedup_key.encode()).hexdigest()
    return IncomingAlert(
        action=action,
        dedup_key=dedup_key,
        summary=clip(" ".join(summary.split()), MAX_SUMMARY_CHARS),
        severity=severity_from_text(severity_text) if mapping.severity else DEFAULT_SEVERITY,
        source=clip(source, MAX_SOURCE_CHARS),
        received_format="generic",
        labels=labels,
        annotations=annotations,
        runbook_url=runbook_from(annotations),
        details=body,
    )


def _pairs(
    name: str,
    templates: dict[str, str],
    value_of: abc.Callable[[str, str | None], Any],
    max_value_chars: int,
) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, template in templates.items():
        value = value_of(f"{name}.{key}", template)
        if value is None or value == "":
            continue  # a label the body does not have is left out, not set to ""
        result[key] = clip(_as_text(value), max_value_chars)
    return result


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _fingerprint(summary: str, source: str, labels: dict[str, str]) -> str:
    """A stable key for posts that carry none: the same condition reposted dedups."""
    identity = orjson.dumps([summary, source, labels], option=orjson.OPT_SORT_KEYS)
    return "generic:" + hashlib.sha256(identity).hexdigest()[:32]


def _expression_problems(where: str, template: str) -> list[FieldError]:
    problems = []
    for expression in expressions_in(template):
        # Only the body exists here: parameters, steps and run are refused by name.
        problem = check_expression(expression, names=BODY_NAMES)
        if problem is not None:
            problems.append(FieldError(where, problem))
    if "${{" in EXPRESSION_RE.sub("", template):
        problems.append(FieldError(where, "a ${{ without its closing }}"))
    return problems
