"""Generic JSON webhooks mapped with the self-service ``${{ }}`` expressions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamplighter.alerting.generic import (
    Mapping,
    check_mapping,
    map_body,
    parse_body,
    parse_mapping,
)
from lamplighter.alerting.intake import FormatError, PayloadTooLarge

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

GRAFANA = {
    "summary": "${{ body.commonAnnotations.summary }}",
    "severity": "${{ body.commonLabels.severity }}",
    "dedup_key": "grafana-${{ body.groupKey }}",
    "source": "${{ body.commonLabels.instance }}",
    "action": "${{ body.status }}",
    "labels": {
        "team": "${{ body.commonLabels.team }}",
        "alertname": "${{ body.alerts[0].labels.alertname }}",
        "service": "${{ body.commonLabels.service | default(none) }}",
    },
    "annotations": {"runbook_url": "${{ body.commonAnnotations.runbook_url }}"},
}
DATADOG = {
    "summary": "${{ body.title }}",
    "severity": "${{ body.alert_priority }}",
    "dedup_key": "datadog-${{ body.alert_id }}-${{ body.hostname }}",
    "source": "${{ body.hostname }}",
    "action": "${{ body.alert_transition }}",
    "labels": {"team": "${{ body.tags.split('team:')[1].split(',')[0] }}"},
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return data


def test_a_grafana_alerting_body_becomes_an_alert_through_its_mapping():
    alert = map_body(parse_mapping(GRAFANA), load("grafana-webhook.json"))

    assert alert.action == "trigger"  # status "firing"
    assert alert.summary == "Disk on db-1 is 96% full"
    assert alert.severity == "critical"
    assert alert.dedup_key == 'grafana-{}:{alertname="DiskFull"}'
    assert alert.source == "db-1"
    assert alert.labels == {"team": "storage", "alertname": "DiskFull"}  # no service: left out
    assert alert.runbook_url == "https://runbooks.example.com/disk-full"
    assert alert.received_format == "generic"
    assert alert.details["title"].startswith("[FIRING:1]")


def test_a_grafana_resolution_resolves_the_same_key():
    body = load("grafana-webhook.json")
    firing = map_body(parse_mapping(GRAFANA), body)
    body["status"] = "resolved"

    resolved = map_body(parse_mapping(GRAFANA), body)

    assert resolved.action == "resolve"
    assert resolved.dedup_key == firing.dedup_key


def test_a_datadog_body_becomes_an_alert_and_recovers():
    body = load("datadog-webhook.json")
    alert = map_body(parse_mapping(DATADOG), body)

    assert alert.action == "trigger"  # "Triggered"
    assert alert.summary == "[Triggered on {host:web-3}] Latency p99 above 800ms"
    assert alert.severity == "error"  # P2
    assert alert.dedup_key == "datadog-88812345-web-3"
    assert alert.labels == {"team": "frontend"}

    body["alert_transition"] = "Recovered"
    assert map_body(parse_mapping(DATADOG), body).action == "resolve"


def test_without_a_dedup_key_the_same_condition_reposted_dedups():
    mapping = Mapping(summary="${{ body.title }}", labels={"host": "${{ body.hostname }}"})
    body = load("datadog-webhook.json")
    first = map_body(mapping, body)
    body["date"] = "1717239999000"  # a later post of the same condition
    again = map_body(mapping, body)
    body["hostname"] = "web-4"
    other = map_body(mapping, body)

    assert first.dedup_key == again.dedup_key != other.dedup_key
    assert first.action == "trigger" and first.severity == "error"  # the defaults


def test_a_missing_field_in_the_body_is_an_error_naming_the_mapping_field_and_the_body_keys():
    with pytest.raises(FormatError) as caught:
        map_body(parse_mapping(DATADOG), {"hostname": "web-3"})

    paths = [path for path, _ in caught.value.pairs]
    assert paths == ["summary", "severity", "action", "labels.team", "dedup_key"]
    reason = dict(caught.value.pairs)["summary"]
    assert "the body has no field 'title' (fields: hostname)" in reason


def test_an_unknown_action_word_is_refused_naming_the_action():
    body = load("datadog-webhook.json")
    body["alert_transition"] = "Exploded"

    with pytest.raises(FormatError) as caught:
        map_body(parse_mapping(DATADOG), body)

    ((path, reason),) = caught.value.pairs
    assert path == "action" and "'Exploded' is not an action" in reason


def test_a_summary_that_comes_out_empty_is_refused():
    with pytest.raises(FormatError) as caught:
        map_body(Mapping(summary="${{ body.title }}"), {"title": "  "})
    assert caught.value.pairs[0][0] == "summary"


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("${{ 9 ** (9 ** 7) }}", "integer over 1024 bits"),
        ("${{ 'a' * 10 ** 8 }}", "over 100,000 characters"),
        ("${{ body.title * 1000000 }}", "over 100,000 characters"),
        ("${{ body.__class__ }}", "Python internals"),
    ],
)
def test_an_expression_that_would_blow_up_is_refused_with_a_reason_not_hung(expression, words):
    started = time.perf_counter()
    with pytest.raises(FormatError) as caught:
        map_body(Mapping(summary=expression), {"title": "disk full"})
    elapsed_s = time.perf_counter() - started

    ((path, reason),) = caught.value.pairs
    assert path == "summary" and words in reason
    assert elapsed_s < 1.0


def test_a_long_dedup_key_is_hashed_and_a_long_summary_cut():
    alert = map_body(
        Mapping(summary="${{ body.text }}", dedup_key="${{ body.text }}"),
        {"text": "x" * 5000},
    )
    assert alert.dedup_key.startswith("sha256:") and len(alert.dedup_key) == 71
    assert len(alert.summary) == 1024 and alert.summary.endswith("…")


def test_non_text_values_become_json_text_in_labels():
    alert = map_body(
        Mapping(summary="x", labels={"values": "${{ body.v }}", "up": "${{ body.up }}"}),
        {"v": {"B": 96.2}, "up": False},
    )
    assert alert.labels == {"values": '{"B":96.2}', "up": "false"}


def test_check_mapping_names_unknown_fields_and_expressions_that_do_not_parse():
    problems = check_mapping(
        {
            "summary": "${{ body.title",
            "severity": "${{ body.sev | | }}",
            "dedup_key": "${{ steps.build.output.id }}",
            "source": 7,
            "priority": "${{ body.p }}",
            "labels": {"team": "${{ os.system('x') }}", "": "x"},
        }
    )

    found = {(p.field, p.reason.split(":")[0]) for p in problems}
    assert ("priority", "unknown field (fields") in found
    assert ("summary", "a ${{ without its closing }}") in found
    assert any(p.field == "severity" and "not a valid expression" in p.reason for p in problems)
    # A template's names are not a webhook's: steps, parameters and run are refused by name.
    assert any(
        p.field == "dedup_key" and "uses 'steps'; expressions may only read body" in p.reason
        for p in problems
    )
    assert any(p.field == "source" and "must be text" in p.reason for p in problems)
    assert any(p.field == "labels.team" and "uses 'os'" in p.reason for p in problems)
    assert any(p.field == "labels." for p in problems)


def test_a_mapping_without_a_summary_cannot_be_saved_and_good_ones_pass():
    assert [p.field for p in check_mapping({"severity": "critical"})] == ["summary"]
    assert check_mapping(GRAFANA) == []
    assert check_mapping(DATADOG) == []
    assert [p.field for p in check_mapping(["summary"])] == ["mapping"]
    with pytest.raises(FormatError):
        parse_mapping({"summary": "x", "colour": "red"})


def test_bodies_over_512_kb_and_non_json_are_refused():
    with pytest.raises(PayloadTooLarge):
        parse_body(b"[" + b"1," * (300 * 1024) + b"1]")
    with pytest.raises(FormatError):
        parse_body(b"{oops")
    with pytest.raises(FormatError) as caught:
        map_body(parse_mapping(GRAFANA), parse_body(b"[1, 2]"))
    assert caught.value.pairs == [("body", "must be a JSON object")]


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_is_mapped_or_refused_with_a_format_error(value):
    for mapping in (GRAFANA, DATADOG):
        try:
            alert = map_body(parse_mapping(mapping), parse_body(orjson.dumps(value)))
        except FormatError as exc:
            assert exc.errors
        else:
            assert alert.summary


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        ["title", "alert_priority", "alert_id", "hostname", "alert_transition", "tags"]
    ),
    json_values,
)
def test_a_real_body_with_any_field_replaced_is_mapped_or_refused(field, value):
    body = load("datadog-webhook.json")
    body[field] = value
    try:
        alert = map_body(parse_mapping(DATADOG), parse_body(orjson.dumps(body)))
    except FormatError as exc:
        assert exc.errors
    else:
        assert alert.dedup_key
