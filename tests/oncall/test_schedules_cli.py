"""``lamplighter schedule …`` and ``lamplighter oncall now`` locally and against a live server,
and ``lamplighter catalog who-owns`` saying who is on call now."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from lamplighter.core.db import Database
from lamplighter.core.manifest import ENTITY_FACTS
from lamplighter.oncall import panels
from tests.conftest import make_token
from tests.oncall import schedule_fixtures
from tests.oncall.schedule_fixtures import BERLIN, Org, local, rotation

org = schedule_fixtures.org
BERLIN_ZONE = ZoneInfo(BERLIN)


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def today() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
def schedule_id(org: Org) -> int:
    """Ada, Bo and Cy taking daily turns at 09:00 Berlin time since two months ago."""
    start = (today() - dt.timedelta(days=60)).astimezone(BERLIN_ZONE).replace(hour=9)
    return org.schedule(
        [rotation("day", org.people, start=start)], name="primary", time_zone=BERLIN
    ).id


def test_list_show_and_export_a_schedule(
    run_cli: Any, org: Org, schedule_id: int, tmp_path: Path
) -> None:
    listed = as_json(run_cli("schedule", "list", "-o", "json"))
    assert [(s["id"], s["team"], s["name"]) for s in listed] == [
        (schedule_id, "oncall-team", "primary")
    ]
    table = run_cli("schedule", "list", "--team", "oncall-team")
    assert table.exit_code == 0 and "primary" in table.output and "day" in table.output

    shown = as_json(run_cli("schedule", "show", str(schedule_id), "--days", "3", "-o", "json"))
    names = [shift["display_name"] for shift in shown["final"]]
    assert len(names) in (3, 4) and set(names) == {"Ada", "Bo", "Cy"}
    readable = run_cli("schedule", "show", str(schedule_id), "--days", "2")
    assert readable.exit_code == 0
    assert "Europe/Berlin" in readable.output
    assert "CET" in readable.output or "CEST" in readable.output  # times in the schedule's zone
    assert "Who is on call, next 2 days" in " ".join(readable.output.split())
    missing = run_cli("schedule", "show", "999")
    assert missing.exit_code == 1 and "no on-call schedule 999" in missing.output

    out = tmp_path / "primary.ics"
    exported = run_cli("schedule", "export-ics", str(schedule_id), "--out", str(out))
    assert exported.exit_code == 0, exported.output
    calendar = icalendar.Calendar.from_ical(out.read_text())
    events = list(calendar.walk("VEVENT"))
    assert 115 <= len(events) <= 122  # a turn a day, 30 days back and 90 ahead
    assert {str(e["SUMMARY"]) for e in events} == {
        f"On call: {name} (primary)" for name in ("Ada", "Bo", "Cy")
    }
    handoff = events[40].decoded("DTSTART").astimezone(BERLIN_ZONE)
    assert (handoff.hour, handoff.minute) == (9, 0)  # 09:00 Berlin, summer or winter
    to_stdout = run_cli("schedule", "export-ics", str(schedule_id))
    assert to_stdout.stdout_bytes.startswith(b"BEGIN:VCALENDAR\r\n")  # RFC 5545's line ends


def test_oncall_now_for_a_team_an_entity_a_schedule_and_at_a_time(
    run_cli: Any, org: Org, schedule_id: int
) -> None:
    for option in (
        ["--team", "oncall-team"],
        ["--entity", "service:default/checkout"],
        ["--schedule", str(schedule_id)],
        [],
    ):
        rows = as_json(run_cli("oncall", "now", *option, "-o", "json"))
        assert len(rows) == 1 and rows[0]["schedule_name"] == "primary", option
    at = local(BERLIN, 2027, 3, 28, 8, 59).isoformat()  # the spring-forward Sunday, before 09:00
    before, after = (
        as_json(run_cli("oncall", "now", "--schedule", str(schedule_id), "--at", t, "-o", "json"))[
            0
        ]
        for t in (at, local(BERLIN, 2027, 3, 28, 9, 0).isoformat())
    )
    assert before["display_name"] != after["display_name"]
    assert after["since"] == "2027-03-28T07:00:00Z"  # 09:00 CEST
    assert before["since"] == "2027-03-27T08:00:00Z"  # 09:00 CET, 23 hours before
    table = run_cli("oncall", "now", "--team", "oncall-team")
    assert table.exit_code == 0 and "primary" in table.output and "@example.com" in table.output
    naive = run_cli("oncall", "now", "--team", "oncall-team", "--at", "2027-03-28T09:00:00")
    assert naive.exit_code == 2 and "give a time zone" in naive.output
    both = run_cli("oncall", "now", "--team", "oncall-team", "--schedule", "1")
    assert both.exit_code == 2 and "give one of" in both.output
    unknown = run_cli("oncall", "now", "--entity", "service:default/ghost")
    assert unknown.exit_code == 1 and "ghost" in unknown.output


def test_remote_commands_answer_like_local_ones(
    run_cli: Any, db: Database, org: Org, schedule_id: int, live_server: str
) -> None:
    env = {"LAMPLIGHTER_TOKEN": make_token(db, org.viewer)}
    remote = ["--url", live_server]
    local_now = as_json(run_cli("oncall", "now", "--entity", "checkout", "-o", "json"))
    remote_now = as_json(
        run_cli(*remote, "oncall", "now", "--entity", "checkout", "-o", "json", env=env)
    )
    assert remote_now == local_now
    assert as_json(run_cli(*remote, "oncall", "now", "-o", "json", env=env)) == local_now
    shown = as_json(run_cli(*remote, "schedule", "show", str(schedule_id), "-o", "json", env=env))
    assert shown["schedule"]["name"] == "primary" and len(shown["final"]) >= 7
    exported = run_cli(*remote, "schedule", "export-ics", str(schedule_id), env=env)
    local_export = run_cli("schedule", "export-ics", str(schedule_id))
    remote_events = icalendar.Calendar.from_ical(exported.stdout).walk("VEVENT")
    local_events = icalendar.Calendar.from_ical(local_export.stdout).walk("VEVENT")
    assert {str(e["UID"]) for e in remote_events[1:-1]} <= {str(e["UID"]) for e in local_events}


@pytest.fixture
def on_call_fact() -> Iterator[None]:
    """The fact as the manifest's entity_facts registers it (added here until it does)."""
    added = panels.entity_facts not in ENTITY_FACTS
    if added:
        ENTITY_FACTS.append(panels.entity_facts)
    yield
    if added:
        ENTITY_FACTS.remove(panels.entity_facts)


def test_who_owns_says_who_is_on_call_now(run_cli: Any, org: Org, on_call_fact: None) -> None:
    nobody = as_json(run_cli("catalog", "who-owns", "checkout", "-o", "json"))
    assert nobody["facts"] == [
        {"label": "on call now", "text": "nobody: the owning team has no on-call schedule"}
    ]
    org.schedule([rotation("always", [org.cy.id], kind="weekly", start=today())])
    owner = run_cli("catalog", "who-owns", "checkout")
    assert owner.exit_code == 0, owner.output
    text = " ".join(owner.output.split())
    assert "on call now" in text and "Cy <cy@example.com> (primary, until" in text
    facts = as_json(run_cli("catalog", "who-owns", "checkout", "-o", "json"))["facts"]
    assert facts[0]["text"].startswith("Cy <cy@example.com> (primary, until ")
