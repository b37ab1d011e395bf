"""Import of ticket history: plain CSV, Jira CSV and JSON with a mapping, idempotence, bad input."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.core.context import Actor
from lamplighter.core.errors import Forbidden, ValidationFailed
from lamplighter.core.models import AuditEntry, User
from lamplighter.tickets import import_formats, imports
from lamplighter.tickets.models import RequestType, StatusChange, Ticket
from tests.conftest import SYSTEM, auth, make_team, make_token, make_user

FIXTURES = Path(__file__).parent / "fixtures"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
HEADER = import_formats.PLAIN_COLUMNS
UTC = dt.UTC


def run(db: Any, data: bytes | str, fmt: str = "csv", **options: Any) -> imports.ImportReport:
    with db.transaction() as session:
        return imports.import_tickets(
            session=session, actor=SYSTEM, data=data, fmt=fmt, now=NOW, **options
        )


def count(db: Any, table: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def tickets(db: Any) -> dict[str, Ticket]:
    with db.sessionmaker() as session:
        return {t.source_id: t for t in session.scalars(sa.select(Ticket))}


def csv_text(*rows: dict[str, str], header: tuple[str, ...] = HEADER) -> str:
    lines = [",".join(header)]
    lines += [",".join(row.get(column, "") for column in header) for row in rows]
    return "\n".join(lines) + "\n"


def good_row(source_id: str = "1", **values: str) -> dict[str, str]:
    return {
        "source_id": source_id,
        "type": "database",
        "title": "A database",
        "created_at": "2026-03-02T09:00:00Z",
        **values,
    }


@pytest.fixture
def people(db: Any) -> dict[str, Any]:
    sre = make_user(db, email="sre@example.com", role="sre")
    dev = make_user(db, email="dev@example.com")
    jane = make_user(db, email="jane@example.com")
    make_team(db, slug="payments", lead=dev)
    make_team(db, slug="platform", lead=sre)
    return {"sre": sre, "dev": dev, "jane": jane}


def test_plain_csv_creates_tickets_with_derived_fields(db: Any, people: dict[str, Any]) -> None:
    audit_before = count(db, AuditEntry)
    report = run(db, (FIXTURES / "plain.csv").read_bytes())

    assert (report.rows, report.created, report.skipped_existing) == (4, 4, 0)
    assert report.by_status == {"done": 2, "new": 1, "in_progress": 1}
    # ghost@example.com is nobody here and team "search" does not exist: left empty, counted.
    assert report.warnings == {"unknown_requester": 1, "unknown_requesting_team": 1}
    assert report.unknown_values == {
        "requester": ["ghost@example.com"],
        "requesting_team": ["search"],
    }
    rows = tickets(db)
    database = rows["csv:101"]
    assert database.status == "done" and database.resolution == "manual"
    assert database.priority == "P2" and database.effort_minutes == 90
    assert database.time_to_done_s == 6 * 3600
    assert database.description == "Needs 100 GB, multi-line\ndescription"
    assert database.labels == ["db", "urgent"]
    assert database.requester_user_id == people["dev"].id
    assert database.assignee_user_id == people["sre"].id
    with db.sessionmaker() as session:
        request_type = session.scalar(sa.select(RequestType).where(RequestType.slug == "database"))
        assert request_type is not None
        targets = request_type.targets["P2"]
        history = session.execute(
            sa.select(StatusChange.from_status, StatusChange.to_status, StatusChange.at)
            .where(StatusChange.ticket_id == database.id)
            .order_by(StatusChange.id)
        ).all()
    created = dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert database.first_response_due_at == created + dt.timedelta(
        minutes=targets["first_response_minutes"]
    )
    assert database.done_due_at == created + dt.timedelta(minutes=targets["done_minutes"])
    assert [(f, t) for f, t, _ in history] == [(None, "new"), ("new", "done")]
    assert history[1][2] == dt.datetime(2026, 3, 2, 15, tzinfo=UTC)
    assert rows["csv:102"].resolution == "automated"
    new = rows["csv:103"]
    assert new.priority == "P3" and new.requester_user_id is None and new.resolution is None
    # A naive time is UTC; an offset is honoured.
    assert new.created_at == dt.datetime(2026, 3, 4, 12, tzinfo=UTC)
    assert rows["csv:104"].created_at == dt.datetime(2026, 3, 5, 7, tzinfo=UTC)
    # One audit entry per ticket plus the summary.
    assert count(db, AuditEntry) - audit_before == 4 + 1


def test_reimport_skips_what_was_imported(db: Any, people: dict[str, Any]) -> None:
    data = (FIXTURES / "plain.csv").read_bytes()
    run(db, data)
    more = data + b"105,other,Something new,,,new,,,,,,2026-03-06T10:00:00Z,,,,\n"

    again = run(db, more)

    assert (again.created, again.skipped_existing) == (1, 4)
    assert count(db, Ticket) == 5


def test_dry_run_reports_and_writes_nothing(db: Any, people: dict[str, Any]) -> None:
    audit_before = count(db, AuditEntry)

    report = run(db, (FIXTURES / "plain.csv").read_bytes(), dry_run=True)

    assert report.dry_run and report.created == 4
    assert report.by_type == {
        "database": 1,
        "access-grant": 1,
        "new-repository": 1,
        "dns-certificate": 1,
    }
    assert count(db, Ticket) == 0 and count(db, AuditEntry) == audit_before


def test_jira_csv_through_a_mapping(db: Any, people: dict[str, Any]) -> None:
    mapping = json.loads((FIXTURES / "jira-mapping.json").read_text())

    report = run(db, (FIXTURES / "jira.csv").read_bytes(), fmt="jira-csv", mapping=mapping)

    assert report.created == 3
    assert report.warnings == {"unknown_requester": 1}
    rows = tickets(db)
    billing = rows["jira:OPS-1"]
    types = _type_slugs(db)
    assert types[billing.type_id] == "database"  # the Jira issue type matched the type's name
    assert billing.priority == "P1" and billing.status == "done"
    assert billing.requester_user_id == people["jane"].id  # "Jane Doe" through mapping.users
    assert billing.labels == ["billing", "db"]  # Jira repeats the Labels column
    assert billing.effort_minutes == 90  # 5,400 seconds
    # Jira CSV times are local to the exporter: Europe/Oslo, UTC+1 in March.
    assert billing.created_at == dt.datetime(2026, 3, 12, 8, 0, tzinfo=UTC)
    assert billing.time_to_done_s == int(6.5 * 3600)
    access = rows["jira:OPS-2"]
    assert types[access.type_id] == "access-grant" and access.status == "rejected"
    assert access.done_at is None and access.resolution is None
    release = rows["jira:OPS-3"]
    assert types[release.type_id] == "other"  # "Task" through the "*" entry
    assert release.status == "in_progress" and release.effort_minutes == 30


def test_jira_json_export(db: Any, people: dict[str, Any]) -> None:
    report = run(db, (FIXTURES / "jira.json").read_bytes(), fmt="jira-json")

    assert report.created == 2
    assert report.warnings == {"unknown_assignee": 1}
    assert report.unknown_values == {"assignee": ["former-employee@example.com"]}
    rows = tickets(db)
    topic = rows["jira:SRE-7"]
    assert _type_slugs(db)[topic.type_id] == "message-topic"
    assert topic.description == "12 partitions, 7 days retention"  # Atlassian document → text
    assert (topic.priority, topic.status, topic.effort_minutes) == ("P2", "done", 45)
    assert topic.time_to_done_s == 86400 and topic.labels == ["kafka", "orders"]
    disk = rows["jira:SRE-8"]
    assert (disk.priority, disk.status, disk.assignee_user_id) == ("P4", "new", None)
    assert disk.created_at == dt.datetime(2026, 3, 12, 11, tzinfo=UTC)


def _type_slugs(db: Any) -> dict[int, str]:
    with db.sessionmaker() as session:
        return dict(session.execute(sa.select(RequestType.id, RequestType.slug)).tuples().all())


BAD_ROWS = {
    "unknown type": (good_row("2", type="kubernetes"), "row 3.type", "unknown request type"),
    "bad priority": (good_row("2", priority="P9"), "row 3.priority", "unknown priority"),
    "bad status": (good_row("2", status="finished"), "row 3.status", "unknown status"),
    "negative effort": (good_row("2", effort_minutes="-5"), "row 3.effort_minutes", "negative"),
    "absurd effort": (
        good_row("2", effort_minutes="700000"),
        "row 3.effort_minutes",
        "10,000 hours",
    ),
    "fractional effort": (good_row("2", effort_minutes="1.5"), "row 3.effort_minutes", "whole"),
    "bad date": (good_row("2", created_at="yesterday"), "row 3.created_at", "not a date"),
    "done before created": (
        good_row("2", status="done", done_at="2026-03-01T09:00:00Z"),
        "row 3.done_at",
        "before created_at",
    ),
    "done without a time": (good_row("2", status="done"), "row 3.done_at", "needs the time"),
    "future": (good_row("2", created_at="2027-01-01T00:00:00Z"), "row 3.created_at", "future"),
    "missing title": (good_row("2", title=""), "row 3.title", "required"),
    "resolution of an open ticket": (
        good_row("2", resolution="automated"),
        "row 3.resolution",
        "only done tickets",
    ),
    "duplicate source id": (good_row("1"), "row 3.source_id", "first in row 2"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_names_row_and_column_and_nothing_is_written(
    case: str, db: Any, people: dict[str, Any]
) -> None:
    row, field, reason = BAD_ROWS[case]

    with pytest.raises(import_formats.ImportFailed) as failed:
        run(db, csv_text(good_row("1"), row))

    assert [e.field for e in failed.value.errors] == [field]
    assert reason in failed.value.errors[0].reason
    assert "nothing was imported" in failed.value.detail
    assert count(db, Ticket) == 0


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (
            csv_text(good_row(), header=tuple(c for c in HEADER if c != "created_at")),
            "row 1.created_at",
            "missing column",
        ),
        (
            "source_id,type,title,createdat\n1,database,x,2026-03-02\n",
            "row 1.createdat",
            "unknown column",
        ),
        ("", "row 1.header", "empty"),
        ("source_id,type,title,created_at\n1,database,x\n", "row 2.*", "3 cells"),
    ],
    ids=["missing column", "unknown column", "empty file", "short row"],
)
def test_wrong_columns_are_refused(
    text: str, field: str, reason: str, db: Any, people: dict[str, Any]
) -> None:
    with pytest.raises(import_formats.ImportFailed) as failed:
        run(db, text)
    assert failed.value.errors[0].field == field
    assert reason in failed.value.errors[0].reason
    assert count(db, Ticket) == 0


def test_every_bad_row_is_reported(db: Any, people: dict[str, Any]) -> None:
    with pytest.raises(import_formats.ImportFailed) as failed:
        run(db, csv_text(good_row("1", priority="P7"), good_row("2", type="nope"), good_row("3")))
    assert [e.field for e in failed.value.errors] == ["row 2.priority", "row 3.type"]


def test_utf8_with_a_byte_order_mark_is_accepted(db: Any, people: dict[str, Any]) -> None:
    data = b"\xef\xbb\xbf" + csv_text(good_row("1", title="Caf\u00e9 database")).encode()
    assert run(db, data).created == 1
    assert tickets(db)["csv:1"].title == "Café database"


def test_other_encodings_are_refused_clearly(db: Any, people: dict[str, Any]) -> None:
    latin1 = csv_text(good_row("1"), good_row("2", title="Caf\u00e9")).encode("latin-1")
    with pytest.raises(import_formats.ImportFailed) as failed:
        run(db, latin1)
    error = failed.value.errors[0]
    assert error.field == "row 3.encoding"
    assert "not UTF-8" in error.reason and "0xE9 on line 3" in error.reason
    utf16 = csv_text(good_row("1")).encode("utf-16")
    with pytest.raises(import_formats.ImportFailed, match="UTF-16"):
        run(db, utf16)
    assert count(db, Ticket) == 0


def test_mapping_is_checked(db: Any, people: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as unknown_key:
        run(db, "x", fmt="jira-csv", mapping={"colums": {}})
    assert unknown_key.value.errors[0].field == "mapping.colums"
    with pytest.raises(ValidationFailed) as bad_status:
        run(db, "x", fmt="jira-csv", mapping={"statuses": {"Shipped": "shipped"}})
    assert bad_status.value.errors[0].field == "mapping.statuses.shipped"
    with pytest.raises(ValidationFailed) as bad_type_target:
        run(
            db,
            (FIXTURES / "jira.csv").read_bytes(),
            fmt="jira-csv",
            mapping={"types": {"Task": "chores"}, "users": {}},
        )
    assert any("'chores'" in e.reason for e in bad_type_target.value.errors)


def test_only_sres_and_admins_import(db: Any, people: dict[str, Any]) -> None:
    with db.transaction() as session:
        member = session.get(User, people["dev"].id)
        assert member is not None
        actor = Actor(kind="user", label=member.email, user_id=member.id, role="member")
        with pytest.raises(Forbidden):
            imports.import_tickets(session=session, actor=actor, data=b"", fmt="csv")


# -- API ---------------------------------------------------------------------------------------
@pytest.fixture
def api(app: Any) -> Iterator[TestClient]:
    """The app with the analytics/import router, ahead of /tickets/{ticket_id} (as in app.py)."""
    from lamplighter.tickets import analytics_api

    if not any(getattr(r, "path", "") == "/api/v1/tickets/import" for r in app.router.routes):
        before = list(app.router.routes)
        app.include_router(analytics_api.router, prefix="/api/v1")
        added = [r for r in app.router.routes if r not in before]
        app.router.routes[:] = added + before
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def test_import_over_http(api: TestClient, db: Any, people: dict[str, Any]) -> None:
    data = (FIXTURES / "jira.csv").read_bytes()
    mapping = (FIXTURES / "jira-mapping.json").read_text()
    form = {"format": "jira-csv", "mapping": mapping}
    files = {"file": ("jira.csv", data, "text/csv")}
    assert api.post("/api/v1/tickets/import", data=form, files=files).status_code == 401
    member = auth(make_token(db, people["dev"]))
    refused = api.post("/api/v1/tickets/import", data=form, files=files, headers=member)
    assert refused.status_code == 403, refused.text
    sre = auth(make_token(db, people["sre"]))

    dry = api.post(
        "/api/v1/tickets/import", data=form | {"dry_run": "true"}, files=files, headers=sre
    )
    assert dry.status_code == 200 and dry.json()["created"] == 3 and count(db, Ticket) == 0
    created = api.post("/api/v1/tickets/import", data=form, files=files, headers=sre)
    assert created.status_code == 201, created.text
    assert created.json()["created"] == 3 and count(db, Ticket) == 3
    again = api.post(
        "/api/v1/tickets/import",
        json={"format": "jira-csv", "content": data.decode(), "mapping": json.loads(mapping)},
        headers=sre,
    )
    assert again.status_code == 201
    assert (again.json()["created"], again.json()["skipped_existing"]) == (0, 3)


def test_import_over_http_names_the_bad_rows(
    api: TestClient, db: Any, people: dict[str, Any]
) -> None:
    sre = auth(make_token(db, people["sre"]))
    body = {"format": "csv", "content": csv_text(good_row("1"), good_row("2", priority="urgent"))}

    response = api.post("/api/v1/tickets/import", json=body, headers=sre)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["row 3.priority"]
    wrong_format = api.post("/api/v1/tickets/import", json=body | {"format": "xlsx"}, headers=sre)
    assert wrong_format.status_code == 422
    assert count(db, Ticket) == 0


def test_a_nul_character_in_a_row_is_refused_naming_the_row_and_column(
    db: Any, people: dict[str, Any]
) -> None:
    """PostgreSQL cannot store NUL in text: a row carrying one is a problem of that row, named,
    and nothing is written (it was a 500 on PostgreSQL, and stored as sent on SQLite)."""
    data = csv_text(good_row("1"), good_row("2", title="A data\x00base"))
    with pytest.raises(ValidationFailed) as caught:
        run(db, data)
    reasons = {error.field: error.reason for error in caught.value.errors}
    assert reasons == {"row 3.title": "contains a NUL character, which text cannot hold"}
    assert count(db, Ticket) == 0
