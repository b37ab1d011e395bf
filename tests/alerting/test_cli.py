"""``lamplighter integration`` and ``lamplighter alert`` on the local database."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.testclient import TestClient

from lamplighter.core.db import Database
from tests.alerting.fixtures_org import Org, am_body, groups


def test_create_an_integration_fire_list_ack_and_resolve_from_the_cli(
    run_cli: Any, db: Database, client: TestClient
) -> None:
    org = Org(db)
    created = run_cli(
        "integration", "create", "prod alertmanager", "--entity", org.entity_ref, "-o", "json"
    )
    assert created.exit_code == 0, created.output
    data = orjson.loads(created.output)
    key = data["key"]
    assert data["ingest_url_with_key"].endswith(key)
    listed = run_cli("integration", "list", "-o", "json")
    assert key not in listed.output and data["key_hint"] in listed.output
    client.post(f"/api/v1/alerting/ingest/alertmanager/{key}", json=am_body())
    rows = orjson.loads(run_cli("alert", "list", "-o", "json").output)
    assert [row["status"] for row in rows] == ["triggered"]
    group_id = str(rows[0]["id"])
    table = run_cli("alert", "list")
    assert "CheckoutHighErrorRate" in table.output or "Checkout" in table.output
    assert run_cli("alert", "ack", group_id).exit_code == 0
    assert groups(db)[0].status == "acknowledged"
    assert run_cli("alert", "resolve", group_id).exit_code == 0
    assert groups(db)[0].status == "resolved"
    assert orjson.loads(run_cli("alert", "list", "-o", "json").output) == []
    rotated = orjson.loads(
        run_cli("integration", "rotate-key", str(data["id"]), "-o", "json").output
    )
    assert rotated["key"] != key
    refused = client.post(f"/api/v1/alerting/ingest/alertmanager/{key}", json=am_body())
    assert refused.status_code == 401


def test_silence_from_the_cli_needs_a_reason_and_a_readable_duration(
    run_cli: Any, db: Database
) -> None:
    org = Org(db)
    missing = run_cli("alert", "silence", "alertname=Disk", "--team", org.team.slug)
    assert missing.exit_code != 0 and "reason" in missing.output
    bad = run_cli(
        "alert",
        "silence",
        "alertname=Disk",
        "--for",
        "soon",
        "--reason",
        "upgrade",
        "--team",
        org.team.slug,
    )
    assert bad.exit_code != 0 and "30m" in bad.output
    made = run_cli(
        "alert",
        "silence",
        "alertname=Disk",
        'instance=~"db-.*"',
        "--for",
        "90m",
        "--reason",
        "disk replacement",
        "--team",
        org.team.slug,
        "-o",
        "json",
    )
    assert made.exit_code == 0, made.output
    silence = orjson.loads(made.output)
    assert silence["matchers"] == ["alertname=Disk", 'instance=~"db-.*"'] and silence["active"]
