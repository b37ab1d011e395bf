"""The hot read: one SLO's status in one statement, answered as JSON without the ORM.

``GET /api/v1/slos/{id}/status`` is what dashboards and release gates poll. Like the catalog's
entity GET (``catalog/service.py`` ``read_view``), it reads the SLO's row and its entity's
reference and tier in one plain SQL statement on the driver's cursor (SQLite: on the event loop,
no session; PostgreSQL: outside a transaction, one round trip) and builds the body with orjson.
:func:`service.status_document` makes the document from the row as from an ORM object, and
``tests/slo/test_api.py`` holds the two bodies equal.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any, NamedTuple

import orjson
from sqlalchemy.orm import Session

from lamplighter.core.db import autocommit_reads
from lamplighter.core.errors import NotFound
from lamplighter.slo import service

_SELECT = (
    "SELECT s.id, s.name, s.objective, s.window_kind, s.window_days, s.time_zone, s.budgeting, "
    "s.alerting, s.policy, s.status, s.status_reason, s.evaluated_at, s.window_start, "
    "s.window_end, s.attainment, s.good_events, s.total_events, s.budget_total, s.budget_spent, "
    "s.budget_remaining, s.burn_rates, s.firing, s.exhaustion_at, s.frozen, "
    "e.kind, e.namespace, e.name AS entity_name, e.tier "
    "FROM slos s JOIN catalog_entities e ON e.id = s.entity_id WHERE s.id = :slo_id"
)
_SELECT_PG = _SELECT.replace(":slo_id", "%(slo_id)s")
_JSON = ("alerting", "policy", "burn_rates", "firing")
_TIMES = ("evaluated_at", "window_start", "window_end", "exhaustion_at")


class StatusRow(NamedTuple):
    id: int
    name: str
    objective: float
    window_kind: str
    window_days: int | None
    time_zone: str
    budgeting: str
    alerting: dict[str, Any]
    policy: dict[str, Any]
    status: str
    status_reason: str
    evaluated_at: dt.datetime | None
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    attainment: float | None
    good_events: float | None
    total_events: float | None
    budget_total: float | None
    budget_spent: float | None
    budget_remaining: float | None
    burn_rates: dict[str, Any]
    firing: list[str]
    exhaustion_at: dt.datetime | None
    frozen: bool
    kind: str
    namespace: str
    entity_name: str
    tier: int | None


def _document(row: StatusRow) -> dict[str, Any]:
    ref = f"{row.kind}:{row.namespace}/{row.entity_name}"
    return service.status_document(row, ref, row.tier)


def read_sqlite(*, connection: sqlite3.Connection, slo_id: int) -> dict[str, Any]:
    """The status document, read on a SQLite driver connection (no session)."""
    found = connection.execute(_SELECT, {"slo_id": slo_id}).fetchone()
    if found is None:
        raise NotFound(f"no SLO {slo_id}")
    row = StatusRow._make(found)
    # What SQLAlchemy's JSON, UTCDateTime and Boolean types make of the stored values.
    values: dict[str, Any] = {name: orjson.loads(getattr(row, name)) for name in _JSON}
    for name in _TIMES:
        text = getattr(row, name)
        values[name] = (
            None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
        )
    values["frozen"] = bool(row.frozen)
    return _document(row._replace(**values))


def read(*, session: Session, slo_id: int) -> dict[str, Any]:
    """The status document in one statement on the session's connection."""
    if session.get_bind().dialect.name != "postgresql":
        driver = session.connection().connection.driver_connection
        if not isinstance(driver, sqlite3.Connection):
            raise TypeError(f"status_view supports PostgreSQL and SQLite, not {driver!r}")
        return read_sqlite(connection=driver, slo_id=slo_id)
    # One statement reads a consistent snapshot: no transaction unless the request began one.
    autocommit_reads(session)
    connection = session.connection()
    found = connection.exec_driver_sql(_SELECT_PG, {"slo_id": slo_id}).first()
    if found is None:
        raise NotFound(f"no SLO {slo_id}")
    row = StatusRow._make(found)
    values: dict[str, Any] = {
        name: (None if getattr(row, name) is None else getattr(row, name).astimezone(dt.UTC))
        for name in _TIMES
    }
    return _document(row._replace(**values))


def to_json(document: dict[str, Any]) -> bytes:
    """:class:`SloStatusRead`'s JSON: the fields in the schema's order, times in UTC with Z."""
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)
