"""The Alertmanager webhook receiver's parser, against payloads shaped like 0.27 and 0.28's."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamplighter.alerting import alertmanager
from lamplighter.alerting.alertmanager import parse_webhook
from lamplighter.alerting.intake import FormatError, PayloadTooLarge, severity_from_text

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alerting"

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


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return data


def body(data: Any) -> bytes:
    return orjson.dumps(data)


def test_a_firing_notification_triggers_each_alert_by_its_fingerprint():
    batch = parse_webhook((FIXTURES / "alertmanager-0.27-firing.json").read_bytes())

    assert batch.status == "firing"
    assert batch.receiver == "lamplighter-checkout"
    assert batch.group_key == '{}/{severity="page"}:{alertname="CheckoutHighErrorRate"}'
    assert batch.external_url == "http://alertmanager.example.com:9093"
    assert [a.dedup_key for a in batch.alerts] == ["c2b1c8a0d8f6e3b1", "5e0c3f8b2a91d7c4"]
    first = batch.alerts[0]
    assert first.action == "trigger"
    assert first.summary == "Checkout answers 7.2% of requests with 5xx"
    assert first.severity == "critical"  # severity="page"
    assert first.source == "checkout-7d9f6c5b8-x2k4q:8080"
    assert first.labels["team"] == "payments"
    assert first.runbook_url == "https://runbooks.example.com/checkout/high-error-rate"
    assert first.starts_at == datetime(2025, 3, 14, 9, 26, 53, 123456, tzinfo=UTC)
    assert first.ends_at is None  # the zero time means unset
    assert first.source_url is not None and first.source_url.startswith("http://prometheus")
    assert first.links == [(first.source_url, "Source")]
    assert first.group_key == batch.group_key
    assert first.received_format == "alertmanager"


def test_a_firing_alerts_timeout_is_not_taken_for_its_end_and_runbook_may_be_named_runbook():
    second = parse_webhook((FIXTURES / "alertmanager-0.27-firing.json").read_bytes()).alerts[1]

    assert second.ends_at is None  # endsAt 09:31:08 is only when Alertmanager would time out
    assert second.runbook_url == "https://runbooks.example.com/checkout/high-error-rate"
    # No summary annotation: the alert name and where it fires.
    assert second.summary == (
        "CheckoutHighErrorRate (service=checkout, job=checkout, "
        "instance=checkout-7d9f6c5b8-9vfrt:8080, namespace=shop, pod=checkout-7d9f6c5b8-9vfrt)"
    )


def test_a_resolved_alert_resolves_with_the_time_it_ended():
    batch = parse_webhook((FIXTURES / "alertmanager-0.27-resolved.json").read_bytes())

    (alert,) = batch.alerts
    assert batch.status == "resolved"
    assert alert.action == "resolve"
    assert alert.dedup_key == "c2b1c8a0d8f6e3b1"  # the same key the trigger had
    assert alert.ends_at == datetime(2025, 3, 14, 9, 48, 23, 4000, tzinfo=UTC)


def test_newer_fields_are_ignored_truncation_is_kept_and_mixed_statuses_map_per_alert():
    batch = parse_webhook((FIXTURES / "alertmanager-0.28-truncated.json").read_bytes())

    assert batch.truncated == 37
    assert batch.group_labels == {"alertname": "KubeNodeNotReady", "cluster": "eu-west-1-prod"}
    firing, resolved = batch.alerts
    assert (firing.action, resolved.action) == ("trigger", "resolve")
    assert firing.starts_at == datetime(2025, 11, 2, 0, 30, tzinfo=UTC)  # +01:00 made UTC
    assert firing.source_url is None and firing.links == []  # empty generatorURL
    assert firing.summary == "KubeNodeNotReady (cluster=eu-west-1-prod)"
    assert firing.source == "eu-west-1-prod"
    assert firing.severity == "warning"
    assert resolved.summary == "Node ip-10-0-4-88 has been unready for more than 15 minutes."


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda d: d.update(version="3"), "version", 'must be "4"'),
        (lambda d: d.pop("version"), "version", 'must be "4"'),
        (lambda d: d.pop("alerts"), "alerts", "missing"),
        (lambda d: d.update(alerts=[]), "alerts", "empty"),
        (lambda d: d.update(alerts={"a": 1}), "alerts", "must be a list"),
        (lambda d: d.update(status="pending"), "status", "firing"),
        (lambda d: d.update(truncatedAlerts="3"), "truncatedAlerts", "whole number"),
        (lambda d: d["alerts"][1].update(startsAt="yesterday"), "alerts[1].startsAt", "RFC 3339"),
        (lambda d: d["alerts"][1].update(startsAt=17), "alerts[1].startsAt", "a number"),
        (lambda d: d["alerts"][0].pop("fingerprint"), "alerts[0].fingerprint", "deduplicated"),
        (lambda d: d["alerts"][0].update(status="ok"), "alerts[0].status", "'ok'"),
        (lambda d: d["alerts"][0]["labels"].update(team=7), "alerts[0].labels.team", "text"),
        (lambda d: d["alerts"][1].update(annotations=[]), "alerts[1].annotations", "a list"),
        (lambda d: d["alerts"][0].pop("labels"), "alerts[0].labels", "missing"),
        (lambda d: d["alerts"].append("x"), "alerts[2]", "object"),
    ],
)
def test_a_body_that_is_not_a_v4_webhook_is_refused_naming_the_field(change, path, words):
    data = fixture("alertmanager-0.27-firing.json")
    change(data)

    with pytest.raises(FormatError) as caught:
        parse_webhook(body(data))

    assert caught.value.status == 400
    assert any(p == path and words in reason for p, reason in caught.value.pairs), (
        caught.value.pairs
    )


def test_every_wrong_field_is_reported_at_once():
    data = fixture("alertmanager-0.27-firing.json")
    data["version"] = 4
    data["alerts"][0]["endsAt"] = "not a time"
    data["alerts"][1]["fingerprint"] = ""

    with pytest.raises(FormatError) as caught:
        parse_webhook(body(data))

    assert [p for p, _ in caught.value.pairs] == [
        "version",
        "alerts[0].endsAt",
        "alerts[1].fingerprint",
    ]


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_refused(raw):
    with pytest.raises(FormatError) as caught:
        parse_webhook(raw)
    assert caught.value.pairs[0][0] == "body"


def test_more_alerts_than_the_limit_are_refused_with_the_receiver_setting_to_use():
    data = fixture("alertmanager-0.27-resolved.json")
    data["alerts"] = data["alerts"] * (alertmanager.MAX_ALERTS + 1)

    with pytest.raises(FormatError) as caught:
        parse_webhook(body(data))

    assert "max_alerts" in caught.value.pairs[0][1]


def test_a_body_over_the_size_limit_is_refused_as_too_large():
    with pytest.raises(PayloadTooLarge) as caught:
        parse_webhook(b" " * (alertmanager.MAX_BODY_BYTES + 1))
    assert caught.value.status == 413


def test_over_long_values_are_cut_not_refused_so_the_page_still_goes_out():
    data = fixture("alertmanager-0.27-firing.json")
    data["alerts"][0]["annotations"]["description"] = "d" * 100_000
    data["alerts"][0]["labels"]["pod"] = "p" * 5_000

    alert = parse_webhook(body(data)).alerts[0]

    assert len(alert.annotations["description"]) == alertmanager.MAX_ANNOTATION_VALUE_CHARS
    assert alert.annotations["description"].endswith("…")
    assert len(alert.labels["pod"]) == alertmanager.MAX_LABEL_VALUE_CHARS
    assert alert.details["clipped"] == ["labels.pod", "annotations.description"]


def test_a_long_summary_annotation_is_cut_to_pagerdutys_1024_characters():
    data = fixture("alertmanager-0.27-firing.json")
    data["alerts"][0]["annotations"]["summary"] = "s" * 3000

    alert = parse_webhook(body(data)).alerts[0]

    assert len(alert.summary) == 1024


def test_too_many_labels_on_one_alert_are_refused():
    data = fixture("alertmanager-0.27-firing.json")
    data["alerts"][0]["labels"] = {f"l{i}": "v" for i in range(alertmanager.MAX_PAIRS + 1)}

    with pytest.raises(FormatError) as caught:
        parse_webhook(body(data))

    assert caught.value.pairs[0][0] == "alerts[0].labels"


@pytest.mark.parametrize(
    ("text", "severity"),
    [
        ("critical", "critical"),
        ("page", "critical"),
        ("P1", "critical"),
        ("high", "error"),
        ("error", "error"),
        ("major", "error"),
        ("warning", "warning"),
        (" WARN ", "warning"),
        ("minor", "warning"),
        ("info", "info"),
        ("informational", "info"),
        ("low", "info"),
        ("none", "info"),
        ("something else", "error"),  # the default, as Alertmanager's PagerDuty notifier
        (None, "error"),
    ],
)
def test_free_text_severities_fold_onto_the_four(text, severity):
    assert severity_from_text(text) == severity


def test_an_alert_without_a_severity_label_is_an_error():
    data = fixture("alertmanager-0.27-firing.json")
    del data["alerts"][0]["labels"]["severity"]

    assert parse_webhook(body(data)).alerts[0].severity == "error"


def test_time_zone_overflow_and_naive_times_are_handled():
    data = fixture("alertmanager-0.27-firing.json")
    data["alerts"][0]["startsAt"] = "2025-03-14T09:26:53"  # no offset: taken as UTC
    data["alerts"][1]["startsAt"] = "9999-12-31T23:30:00-05:00"  # past datetime.max in UTC

    with pytest.raises(FormatError) as caught:
        parse_webhook(body(data))

    assert caught.value.pairs == [
        ("alerts[1].startsAt", "not an RFC 3339 time: '9999-12-31T23:30:00-05:00'")
    ]
    data["alerts"][1]["startsAt"] = "2025-03-14T10:26:53+01:00"
    first, second = parse_webhook(body(data)).alerts
    assert first.starts_at == second.starts_at
    assert first.starts_at is not None and first.starts_at.utcoffset() == timedelta(0)
    assert first.starts_at.tzinfo in (UTC, UTC)


def test_a_batch_of_100_alerts_parses_well_under_a_millisecond_per_alert():
    data = fixture("alertmanager-0.27-firing.json")
    template = data["alerts"][0]
    data["alerts"] = []
    for index in range(100):
        alert = copy.deepcopy(template)
        alert["fingerprint"] = f"{index:016x}"
        alert["labels"]["pod"] = f"checkout-{index}"
        data["alerts"].append(alert)
    raw = body(data)
    parse_webhook(raw)

    started = time.perf_counter()
    for _ in range(20):
        batch = parse_webhook(raw)
    per_alert_s = (time.perf_counter() - started) / (20 * 100)

    assert len({a.dedup_key for a in batch.alerts}) == 100
    assert per_alert_s < 0.0001, f"{per_alert_s * 1e6:.1f} µs an alert"


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_is_parsed_or_refused_with_a_format_error(value):
    try:
        batch = parse_webhook(orjson.dumps(value))
    except FormatError as exc:
        assert exc.errors and exc.status in (400, 413)
    else:
        assert batch.alerts


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["", "status", "labels", "annotations", "startsAt", "fingerprint"]),
    st.integers(0, 1),
    json_values,
)
def test_a_real_body_with_any_field_replaced_is_parsed_or_refused(field, index, value):
    data = fixture("alertmanager-0.28-truncated.json")
    if field:
        data["alerts"][index][field] = value
    else:
        data["alerts"][index] = value
    try:
        batch = parse_webhook(body(data))
    except FormatError as exc:
        assert exc.errors
    else:
        assert len(batch.alerts) == 2
