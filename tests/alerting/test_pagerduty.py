"""PagerDuty Events API v2 events, validated as PagerDuty documents them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamplighter.alerting.intake import FormatError, PayloadTooLarge
from lamplighter.alerting.pagerduty import (
    MAX_PAYLOAD_BYTES,
    error_body,
    parse_event,
    success_body,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alerting"
KEY = "R0123456789abcdef0123456789abcde"
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def never() -> str:
    raise AssertionError("a key was generated for an event that had one")


def trigger(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": KEY,
        "event_action": "trigger",
        "payload": {"summary": "Disk full on db-1", "source": "db-1", "severity": "critical"},
    }
    event.update(changes)
    return event


def errors_of(event: Any) -> list[tuple[str, str]]:
    with pytest.raises(FormatError) as caught:
        parse_event(orjson.dumps(event), generate_key=lambda: "generated")
    assert caught.value.status == 400
    return caught.value.pairs


def test_pagerdutys_documented_example_is_accepted_field_by_field():
    routing_key, alert = parse_event(
        (FIXTURES / "pagerduty-trigger.json").read_bytes(), generate_key=never
    )

    assert routing_key == KEY
    assert alert.action == "trigger"
    assert alert.dedup_key == "samplekeyhere"
    assert alert.summary == "Example alert on host1.example.com"
    assert alert.severity == "info"
    assert alert.source.startswith("monitoringtool:cloudvendor")
    assert alert.starts_at == datetime(2015, 7, 17, 8, 42, 58, 315000, tzinfo=UTC)
    assert alert.labels == {
        "component": "postgres",
        "group": "prod-datapipe",
        "class": "deploy",
        "client": "Sample Monitoring Service",
    }
    assert alert.details == {"ping time": "1500ms", "load avg": 0.75}
    assert alert.links == [("https://example.com/", "Link text")]
    assert alert.images == [
        ("https://www.example.com/graph.png", "https://example.com/", "Example text")
    ]
    assert alert.source_url == "https://monitoring.example.com"
    assert alert.received_format == "pagerduty"


def test_a_trigger_without_a_dedup_key_gets_a_generated_one_and_only_then():
    keys = iter(["4f1c2a5e-generated"])
    _, alert = parse_event(orjson.dumps(trigger()), generate_key=lambda: next(keys))
    assert alert.dedup_key == "4f1c2a5e-generated"
    _, alert = parse_event(orjson.dumps(trigger(dedup_key="")), generate_key=lambda: "blank")
    assert alert.dedup_key == "blank"  # a blank key is no key
    _, alert = parse_event(orjson.dumps(trigger(dedup_key="mine")), generate_key=never)
    assert alert.dedup_key == "mine"


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_acknowledge_and_resolve_need_a_dedup_key_and_nothing_else(action):
    _, alert = parse_event(
        orjson.dumps({"routing_key": KEY, "event_action": action, "dedup_key": "k1"}),
        generate_key=never,
    )
    assert (alert.action, alert.dedup_key) == (action, "k1")

    assert errors_of({"routing_key": KEY, "event_action": action}) == [
        ("dedup_key", f"'dedup_key' is required for event_action {action}")
    ]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            trigger(routing_key="short"),
            ("routing_key", "Length of 'routing_key' is incorrect (should be 32 characters)"),
        ),
        (trigger(routing_key=None), ("routing_key", "'routing_key' is missing or blank")),
        (trigger(routing_key=12345), ("routing_key", "'routing_key' must be a string")),
        (trigger(event_action=None), ("event_action", "'event_action' is missing or blank")),
        (
            trigger(event_action="escalate"),
            (
                "event_action",
                "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)",
            ),
        ),
        (
            trigger(dedup_key="k" * 256),
            ("dedup_key", "Length of 'dedup_key' is incorrect (should be at most 255 characters)"),
        ),
        (trigger(payload=None), ("payload", "'payload' is missing")),
        (trigger(payload=[]), ("payload", "'payload' is invalid (must be an object)")),
        (
            trigger(payload={"source": "db-1", "severity": "error"}),
            ("payload.summary", "'payload.summary' is missing or blank"),
        ),
        (
            trigger(payload={"summary": "s" * 1025, "source": "db-1", "severity": "error"}),
            (
                "payload.summary",
                "Length of 'payload.summary' is incorrect (should be at most 1024 characters)",
            ),
        ),
        (
            trigger(payload={"summary": "x", "source": " ", "severity": "error"}),
            ("payload.source", "'payload.source' is missing or blank"),
        ),
        (
            trigger(payload={"summary": "x", "source": "db-1"}),
            ("payload.severity", "'payload.severity' is missing or blank"),
        ),
        (
            trigger(payload={"summary": "x", "source": "db-1", "severity": "page"}),
            (
                "payload.severity",
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)",
            ),
        ),
        (
            trigger(
                payload={"summary": "x", "source": "d", "severity": "info", "timestamp": "now"}
            ),
            ("payload.timestamp", "'payload.timestamp' is invalid (must be an ISO 8601 timestamp)"),
        ),
        (
            trigger(payload={"summary": "x", "source": "d", "severity": "info", "group": 3}),
            ("payload.group", "'payload.group' must be a string"),
        ),
        (
            trigger(links=[{"text": "no href"}]),
            ("links[0].href", "'links[0].href' is missing or blank"),
        ),
        (trigger(links="https://x"), ("links", "'links' must be a list of objects")),
        (
            trigger(images=[{"alt": "no src"}]),
            ("images[0].src", "'images[0].src' is missing or blank"),
        ),
        (trigger(images=["https://x"]), ("images[0]", "'images[0]' must be an object")),
        (trigger(client_url=["x"]), ("client_url", "'client_url' must be a string")),
    ],
)
def test_each_documented_rule_is_enforced_with_pagerdutys_wording(event, expected):
    assert errors_of(event) == [expected]


def test_all_problems_are_reported_together_in_pagerdutys_400_body():
    pairs = errors_of({"routing_key": "x", "event_action": "trigger", "payload": {}})

    with pytest.raises(FormatError) as caught:
        parse_event(
            orjson.dumps({"routing_key": "x", "event_action": "trigger", "payload": {}}),
            generate_key=never,
        )
    assert error_body(caught.value.errors) == {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": [reason for _, reason in pairs],
    }
    assert [path for path, _ in pairs] == [
        "routing_key",
        "payload.summary",
        "payload.source",
        "payload.severity",
    ]


def test_the_success_body_is_pagerdutys():
    assert success_body("abc") == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "abc",
    }


def test_unicode_is_kept_and_summary_length_counts_characters_not_bytes():
    summary = "Überlast ⚠️ 数据库 " + "é" * 1000  # over 1024 bytes, within 1024 characters
    assert len(summary) <= 1024 < len(summary.encode())
    _, alert = parse_event(
        orjson.dumps(
            trigger(payload={"summary": summary, "source": "Zürich-1", "severity": "warning"})
        ),
        generate_key=lambda: "k",
    )
    assert alert.summary == summary
    assert alert.source == "Zürich-1"


def test_huge_custom_details_are_kept_whole_up_to_the_512_kb_limit():
    details = {"log": "x" * (400 * 1024), "nested": {"values": list(range(1000))}}
    event = trigger(
        payload={"summary": "s", "source": "d", "severity": "error", "custom_details": details}
    )
    _, alert = parse_event(orjson.dumps(event), generate_key=lambda: "k")
    assert alert.details == details

    event["payload"]["custom_details"] = {"log": "x" * MAX_PAYLOAD_BYTES}
    with pytest.raises(PayloadTooLarge) as caught:
        parse_event(orjson.dumps(event), generate_key=lambda: "k")
    assert caught.value.status == 413


def test_custom_details_that_are_not_an_object_are_kept_too():
    event = trigger(
        payload={"summary": "s", "source": "d", "severity": "error", "custom_details": "free text"}
    )
    _, alert = parse_event(orjson.dumps(event), generate_key=lambda: "k")
    assert alert.details == {"details": "free text"}


def test_a_runbook_is_found_in_custom_details_or_among_the_links():
    event = trigger(
        payload={
            "summary": "s",
            "source": "d",
            "severity": "error",
            "custom_details": {"runbook_url": "https://rb/1"},
        }
    )
    _, alert = parse_event(orjson.dumps(event), generate_key=lambda: "k")
    assert alert.runbook_url == "https://rb/1"

    event = trigger(links=[{"href": "https://dash"}, {"href": "https://rb/2", "text": "Runbook"}])
    _, alert = parse_event(orjson.dumps(event), generate_key=lambda: "k")
    assert alert.runbook_url == "https://rb/2"
    assert alert.links[0] == ("https://dash", "https://dash")  # no text: the href shown


def test_payload_is_ignored_on_resolve_as_pagerduty_does():
    event = {"routing_key": KEY, "event_action": "resolve", "dedup_key": "k", "payload": "junk"}
    _, alert = parse_event(orjson.dumps(event), generate_key=never)
    assert alert.action == "resolve"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"null", b'"trigger"'])
def test_a_body_that_is_not_an_event_object_is_invalid(raw):
    with pytest.raises(FormatError) as caught:
        parse_event(raw, generate_key=never)
    assert caught.value.pairs[0][0] == "body"


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_is_accepted_or_refused_with_a_format_error(value):
    try:
        routing_key, alert = parse_event(orjson.dumps(value), generate_key=lambda: "k")
    except FormatError as exc:
        assert error_body(exc.errors)["errors"]
    else:
        assert len(routing_key) == 32 and alert.dedup_key


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["routing_key", "event_action", "dedup_key", "payload", "links", "images", "client"]
    ),
    st.sampled_from(["", "summary", "source", "severity", "timestamp", "custom_details"]),
    json_values,
)
def test_a_real_event_with_any_field_replaced_is_accepted_or_refused(top, inner, value):
    event = orjson.loads((FIXTURES / "pagerduty-trigger.json").read_bytes())
    if inner and top == "payload":
        event["payload"][inner] = value
    else:
        event[top] = value
    try:
        routing_key, alert = parse_event(orjson.dumps(event), generate_key=lambda: "k")
    except FormatError as exc:
        assert error_body(exc.errors)["errors"]
    else:
        assert len(routing_key) == 32 and alert.dedup_key
