"""The ingest path's write: many senders' alerts in one transaction, set-based.

:func:`write` takes the submissions the group committer gathered (``committer.py``) — each an
integration and the alerts one request carried — and stores them all with a handful of
statements, whatever their number:

1. fold the batch by (integration, dedup key): the last trigger's content wins, occurrences
   add up, a later acknowledge or resolve applies after it;
2. read the active silences and maintenance windows of the teams concerned (one query) and
   the open alerts among the keys (one query per thousand keys);
3. read the groups already open to the new alerts (accepting, within their window; no lock);
   for the others, close groups whose grouping window has passed (one UPDATE per
   integration), then upsert them — ``INSERT … ON CONFLICT (integration_id, group_key)
   WHERE accepting DO UPDATE … RETURNING``: the partial unique index decides, across
   processes, which transaction opened a group (``opened_by`` is set on insert only);
4. upsert the alerts, in key order — ``ON CONFLICT (integration_id, dedup_key) WHERE status
   <> 'resolved'``; then add them to the counts of the groups they joined (``UPDATE … WHERE
   accepting RETURNING``, in id order): a group's row is locked for that last statement only,
   so several API processes can take a flood into one group. A group that stopped accepting
   since the read has a new one opened, and the batch's alerts move to it;
5. acknowledge and resolve by key (UPDATE … RETURNING group ids), then resolve the groups
   that have no open alert left;
6. append the group timeline entries and emit one event per group change with
   ``events.emit_many`` — the only statement that takes the journal lock, once per
   transaction, and only when a group opened or changed: a storm folding into an open group
   takes no lock at all.

On-call subscribes to ``alert.group_triggered``: the job that starts the escalation is
enqueued by ``emit_many`` in this same transaction, so a request answered 2xx has its alerts
and the start of their notification committed together.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.alerting import matchers
from lamplighter.alerting.event_types import GroupAcknowledged, GroupResolved, GroupTriggered
from lamplighter.alerting.intake import IncomingAlert, clip
from lamplighter.alerting.integrations import Snapshot
from lamplighter.alerting.models import (
    SEVERITY_RANK,
    Alert,
    AlertGroup,
    AlertStatus,
    SilenceKind,
)
from lamplighter.catalog.models import Entity
from lamplighter.core import events
from lamplighter.core.db import Database, driver_cursor, utcnow

OPEN = (AlertStatus.TRIGGERED.value, AlertStatus.ACKNOWLEDGED.value)
KEY_CHUNK = 500


@dataclass
class Submission:
    """One request's alerts for one integration."""

    integration: Snapshot
    alerts: Sequence[IncomingAlert]


@dataclass
class Outcome:
    accepted: int
    opened_groups: list[int] = field(default_factory=list)
    changed: bool = False  # a group opened, was acknowledged or resolved: events were emitted


@dataclass(slots=True)
class _Folded:
    integration: Snapshot
    dedup_key: str
    trigger: IncomingAlert | None = None
    occurrences: int = 0
    after: str | None = None  # "acknowledge" | "resolve", applied after the trigger


@dataclass(slots=True)
class _NewGroup:
    integration: Snapshot
    group_key: str
    policy_id: int | None
    first: IncomingAlert
    severity: str
    count: int = 0


def write(db: Database, submissions: Sequence[Submission]) -> list[Outcome]:
    """Store the submissions in one transaction; one outcome per submission."""
    with db.transaction() as session:
        return write_in(session, submissions)


def write_in(
    session: Session, submissions: Sequence[Submission], *, now: dt.datetime | None = None
) -> list[Outcome]:
    now = now or utcnow()
    batch = uuid.uuid4().hex
    outcomes = [Outcome(accepted=len(s.alerts)) for s in submissions]
    folded = _fold(submissions)
    if not folded:
        return outcomes
    triggers = [f for f in folded.values() if f.trigger is not None]
    pending: list[events.Pending] = []
    log_rows: list[dict[str, Any]] = []
    entity_refs = {s.integration.entity_id: s.integration.entity_ref for s in submissions}

    opened: dict[tuple[int, str], int] = {}
    if _sql(session).columnar:
        # Every lookup here is a few keys in a unique index. PostgreSQL plans by its
        # statistics, and from a fresh database's (taken while a table was nearly empty) it
        # chose to scan the table for each key: the steady run fell from 981 to 856 alerts/s
        # with 5 s to the first page. The intake's transaction never wants a sequential scan.
        driver_cursor(session, write=False).execute("SET LOCAL enable_seqscan = off")
    if triggers:
        silence_of = _silences(session, triggers, now)
        existing = _open_alerts(session, [(f.integration.id, f.dedup_key) for f in triggers])
        new_groups: dict[tuple[int, str], _NewGroup] = {}
        group_of_alert: dict[tuple[int, str], tuple[int, str]] = {}
        for item in triggers:
            key = (item.integration.id, item.dedup_key)
            if key in existing or key in silence_of:
                continue
            assert item.trigger is not None
            policy_id = _route(item.integration, item.trigger)
            group_key = _group_key(item.integration, item.trigger, policy_id)
            gkey = (item.integration.id, group_key)
            group = new_groups.get(gkey)
            if group is None:
                group = new_groups[gkey] = _NewGroup(
                    integration=item.integration,
                    group_key=group_key,
                    policy_id=policy_id,
                    first=item.trigger,
                    severity=item.trigger.severity,
                )
            elif SEVERITY_RANK[item.trigger.severity] > SEVERITY_RANK[group.severity]:
                group.severity = item.trigger.severity
            group.count += 1
            group_of_alert[key] = gkey
        # Groups already open to these alerts are read, not locked, and counted into only after
        # the alerts are written: a flood into one group from several processes then holds its
        # row for the last statement and the commit, not for the whole transaction.
        joined = _accepting_groups(session, new_groups, now)
        group_ids = _upsert_groups(
            session, {k: g for k, g in new_groups.items() if k not in joined}, batch, now
        )
        for gkey, (group_id, opened_by) in group_ids.items():
            if opened_by == batch:
                opened[gkey] = group_id
        group_ids.update((gkey, (group_id, "")) for gkey, group_id in joined.items())
        _upsert_alerts(session, triggers, existing, group_of_alert, group_ids, silence_of, now)
        closed = _count_into(session, {k: (gid, new_groups[k]) for k, gid in joined.items()}, now)
        if closed:  # stopped accepting since the read (resolved, or its window passed)
            moved = _upsert_groups(session, {k: new_groups[k] for k in closed}, batch, now)
            _move_alerts(session, moved, closed, group_of_alert)
            for gkey, (group_id, opened_by) in moved.items():
                if opened_by == batch:
                    opened[gkey] = group_id
        for gkey, group_id in opened.items():
            group = new_groups[gkey]
            log_rows.append(
                {
                    "group_id": group_id,
                    "at": now,
                    "what": "opened",
                    "actor_user_id": None,
                    "detail": {"summary": clip(group.first.summary, 300), "alerts": group.count},
                }
            )
            pending.append(
                events.Pending(
                    "alert.group_triggered",
                    f"alert-group:{group_id}",
                    GroupTriggered(
                        id=group_id,
                        team_id=group.integration.team_id,
                        entity=group.integration.entity_ref,
                        integration_id=group.integration.id,
                        summary=clip(group.first.summary, 300),
                        severity=group.severity,
                        policy_id=group.policy_id,
                    ),
                )
            )
    acks = [f for f in folded.values() if f.after == "acknowledge"]
    resolves = [f for f in folded.values() if f.after == "resolve"]
    if acks:
        for row in _acknowledge_by_key(session, acks, now):
            log_rows.append(_log(row.id, now, "acknowledged", {"by": "sender"}))
            pending.append(
                events.Pending(
                    "alert.group_acknowledged",
                    f"alert-group:{row.id}",
                    GroupAcknowledged(**_ref(session, row, entity_refs), by_user_id=None),
                )
            )
    if resolves:
        for row in _resolve_by_key(session, resolves, now):
            log_rows.append(_log(row.id, now, "resolved", {"by": "sender"}))
            pending.append(
                events.Pending(
                    "alert.group_resolved",
                    f"alert-group:{row.id}",
                    GroupResolved(**_ref(session, row, entity_refs), by_user_id=None),
                )
            )
    if log_rows:
        _insert_log(session, log_rows)
    if pending:
        events.emit_many(session=session, pending=pending)
        for outcome in outcomes:
            outcome.changed = True
    by_integration: dict[int, list[int]] = {}
    for (integration_id, _), group_id in opened.items():
        by_integration.setdefault(integration_id, []).append(group_id)
    for submission, outcome in zip(submissions, outcomes, strict=True):
        outcome.opened_groups = by_integration.pop(submission.integration.id, [])
    return outcomes


def _log(group_id: int, now: dt.datetime, what: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"group_id": group_id, "at": now, "what": what, "actor_user_id": None, "detail": detail}


def _ref(session: Session, row: Any, entity_refs: dict[int | None, str | None]) -> dict[str, Any]:
    entity = None
    if row.entity_id is not None:
        entity = entity_refs.get(row.entity_id)
        if entity is None:
            found = session.get(Entity, row.entity_id)
            entity = found.ref if found is not None else None
    return {
        "id": row.id,
        "team_id": row.team_id,
        "entity": entity,
        "integration_id": row.integration_id,
        "summary": clip(row.summary, 300),
        "severity": row.severity,
    }


def _fold(submissions: Iterable[Submission]) -> dict[tuple[int, str], _Folded]:
    folded: dict[tuple[int, str], _Folded] = {}
    for submission in submissions:
        integration = submission.integration
        for alert in submission.alerts:
            key = (integration.id, alert.dedup_key)
            item = folded.get(key)
            if item is None:
                item = folded[key] = _Folded(integration=integration, dedup_key=alert.dedup_key)
            if alert.action == "trigger":
                item.trigger = _mapped(integration, alert)
                item.occurrences += 1
                item.after = None
            elif alert.action == "resolve" or item.after != "resolve":
                item.after = alert.action
    return folded


def _mapped(integration: Snapshot, alert: IncomingAlert) -> IncomingAlert:
    """The alert with the integration's own severity words applied."""
    if not integration.severity_map:
        return alert
    said = alert.labels.get("severity") or alert.details.get("severity")
    if isinstance(said, str) and said in integration.severity_map:
        severity: Any = integration.severity_map[said]
        return dataclasses.replace(alert, severity=severity)
    return alert


def _labels(alert: IncomingAlert) -> dict[str, str]:
    labels = dict(alert.labels)
    labels.setdefault("severity", alert.severity)
    return labels


def _route(integration: Snapshot, alert: IncomingAlert) -> int | None:
    """The first routing rule whose matchers all match; else the integration's policy."""
    if integration.routes:
        labels = _labels(alert)
        for route in integration.routes:
            if matchers.all_match(route.matchers, labels):
                return route.policy_id
    return integration.policy_id


def _group_key(integration: Snapshot, alert: IncomingAlert, policy_id: int | None) -> str:
    parts = [f"policy={policy_id or ''}"]
    for name in integration.group_by:
        if name == "@group_key":
            value = alert.group_key or ""
        elif name == "@dedup_key":
            value = alert.dedup_key
        else:
            value = alert.labels.get(name, "")
        parts.append(f"{name}={value}")
    text = "|".join(parts)
    if len(text) > 255:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def _kind(alert: IncomingAlert) -> str:
    return clip(alert.labels.get("alertname") or alert.summary, 255)


def _silences(
    session: Session, triggers: Sequence[_Folded], now: dt.datetime
) -> dict[tuple[int, str], int]:
    """The silence or maintenance window each trigger falls under, by key."""
    sql = _sql(session)
    teams = sorted({item.integration.team_id for item in triggers})
    cursor = driver_cursor(session, write=False)
    rows: list[Any] = []
    for team_id in teams:
        cursor.execute(sql.silences, (team_id, sql.time(now), sql.time(now)))
        rows.extend(cursor.fetchall())
    if not rows:
        return {}
    rows.sort(key=lambda row: row[0])
    parsed = [
        (silence_id, kind, team_id, entity_id, matchers.parse_all(_json_value(raw) or [], "")[0])
        for silence_id, kind, team_id, entity_id, raw in rows
    ]
    found: dict[tuple[int, str], int] = {}
    for item in triggers:
        assert item.trigger is not None
        labels = _labels(item.trigger)
        for silence_id, kind, team_id, entity_id, its_matchers in parsed:
            if team_id != item.integration.team_id:
                continue
            if kind == SilenceKind.MAINTENANCE.value:
                hit = entity_id is not None and entity_id == item.integration.entity_id
            else:
                hit = bool(its_matchers) and matchers.all_match(its_matchers, labels)
            if hit:
                found[(item.integration.id, item.dedup_key)] = silence_id
                break
    return found


def _chunks(keys: Sequence[tuple[int, str]]) -> Iterable[Sequence[tuple[int, str]]]:
    for start in range(0, len(keys), KEY_CHUNK):
        yield keys[start : start + KEY_CHUNK]


def _open_alerts(
    session: Session, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], int | None]:
    """The open alerts among ``keys``: (integration, dedup key) -> group id, each a lookup in
    the open-alert unique index."""
    sql = _sql(session)
    return {
        (integration_id, dedup_key): group_id
        for integration_id, (dedup_key, group_id) in _by_keys(session, sql.open_alerts, keys)
    }


KEYS_PER_STATEMENT = 1000


def _by_keys(
    session: Session,
    statement: str,
    keys: Iterable[tuple[int, str]],
    extra: Callable[[int], tuple[Any, ...]] = lambda _: (),
) -> Iterator[tuple[int, Any]]:
    """Run a lookup of ``(integration, key)`` pairs one statement per integration and thousand
    keys; its rows, each with its integration. ``statement`` takes the keys first on
    PostgreSQL (an array), last on SQLite (a JSON list), the integration and ``extra(it)``
    between."""
    sql = _sql(session)
    by_integration: dict[int, list[str]] = {}
    for integration_id, key in keys:
        by_integration.setdefault(integration_id, []).append(key)
    cursor = driver_cursor(session, write=False)
    for integration_id, values in by_integration.items():
        more = extra(integration_id)
        for start in range(0, len(values), KEYS_PER_STATEMENT):
            chunk = sql.key_list(values[start : start + KEYS_PER_STATEMENT])
            params = (
                (chunk, integration_id, *more) if sql.columnar else (integration_id, *more, chunk)
            )
            cursor.execute(statement, params)
            for row in cursor.fetchall():
                yield integration_id, row


def _json_value(raw: Any) -> Any:
    """A JSON column as the driver gives it: text from sqlite3, parsed from psycopg."""
    return orjson.loads(raw) if isinstance(raw, str | bytes) else raw


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


_SQLITE_TIMES: dict[dt.datetime, str] = {}


def _sqlite_time(value: dt.datetime | None) -> str | None:
    """A timestamp as SQLAlchemy's SQLite dialect stores it (``UTCDateTime``: naive UTC, with
    microseconds). The alerts of a batch mostly share their times: the texts are kept."""
    if value is None:
        return None
    text = _SQLITE_TIMES.get(value)
    if text is None:
        if len(_SQLITE_TIMES) > 4096:
            _SQLITE_TIMES.clear()
        naive = value.astimezone(dt.UTC).replace(tzinfo=None)
        text = _SQLITE_TIMES[value] = naive.isoformat(" ", "microseconds")
    return text


def _pg_time(value: dt.datetime | None) -> dt.datetime | None:
    return value


_RANK = (
    "CASE {0} " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in SEVERITY_RANK.items()) + " ELSE 0 END"
)
# The hot path's columns and their PostgreSQL types (for the casts and the unnest arrays).
_GROUP_COLUMNS_SQL = (
    ("integration_id", "int"),
    ("team_id", "int"),
    ("entity_id", "int"),
    ("group_key", "text"),
    ("accepting", "bool"),
    ("status", "text"),
    ("severity", "text"),
    ("summary", "text"),
    ("kind", "text"),
    ("runbook_url", "text"),
    ("labels", "json"),
    ("alert_count", "int"),
    ("policy_id", "int"),
    ("opened_by", "text"),
    ("created_at", "timestamptz"),
    ("last_alert_at", "timestamptz"),
)
_ALERT_COLUMNS_SQL = (
    ("integration_id", "int"),
    ("group_id", "int"),
    ("silence_id", "int"),
    ("dedup_key", "text"),
    ("status", "text"),
    ("severity", "text"),
    ("summary", "text"),
    ("source", "text"),
    ("kind", "text"),
    ("labels", "json"),
    ("annotations", "json"),
    ("details", "jsonb"),
    ("runbook_url", "text"),
    ("starts_at", "timestamptz"),
    ("ends_at", "timestamptz"),
    ("occurrences", "int"),
    ("created_at", "timestamptz"),
    ("last_seen_at", "timestamptz"),
    ("resolved_at", "timestamptz"),
)
_LOG_COLUMNS_SQL = (
    ("group_id", "int"),
    ("at", "timestamptz"),
    ("what", "text"),
    ("actor_user_id", "int"),
    ("detail", "jsonb"),
)


@dataclass(frozen=True)
class _Sql:
    """The hot path's SQL for one dialect, sent on the driver's cursor with its own parameters
    (:func:`driver_cursor`): SQLAlchemy's per-row bind processing cost more than SQLite's
    insert itself, and its per-statement work about as much as a small statement. Timestamps
    are given as each dialect stores them (``time``)."""

    silences: str
    open_alerts: str
    accepting_groups: str
    count_into: str
    stale: str
    groups: str
    alerts: str
    log: str
    time: Any
    key_list: Any
    columnar: bool

    def groups_for(self, count: int) -> str:
        """SQLite's group upsert for ``count`` rows of parameters."""
        found = _GROUPS_SQL.get(count)
        if found is None:
            row = f"({_placeholders('sqlite', _GROUP_COLUMNS_SQL)})"
            found = self.groups.replace("{rows}", ", ".join([row] * count))
            if count <= 32:  # the usual sizes are kept
                _GROUPS_SQL[count] = found
        return found  # PostgreSQL: the alerts go as one JSON document (json_to_recordset)


def _placeholders(dialect: str, columns: Sequence[tuple[str, str]]) -> str:
    if dialect == "postgresql":
        return ", ".join(f"%s::{kind}" for _, kind in columns)
    return ", ".join("?" for _ in columns)


def _build_sql(dialect: str) -> _Sql:
    # Built from this module's constants only (column names, placeholders): no input reaches
    # the text, hence the S608 waivers.
    pg = dialect == "postgresql"
    p = "%s" if pg else "?"
    names = ", ".join(name for name, _ in _ALERT_COLUMNS_SQL)
    if pg:
        # The rows as one JSON document: orjson writes it in C, where psycopg's array dumpers
        # spent 5 µs an alert in Python quoting text, and the server reads it as fast.
        record = ", ".join(f"{name} {kind}" for name, kind in _ALERT_COLUMNS_SQL)
        alert_source = f"SELECT {names} FROM json_to_recordset(%s::json) AS r({record})"  # noqa: S608
    else:
        alert_source = f"VALUES ({_placeholders(dialect, _ALERT_COLUMNS_SQL)})"
    group_names = ", ".join(name for name, _ in _GROUP_COLUMNS_SQL)
    if pg:
        group_record = ", ".join(f"{name} {kind}" for name, kind in _GROUP_COLUMNS_SQL)
        group_source = f"SELECT {group_names} FROM json_to_recordset(%s::json) AS r({group_record})"  # noqa: S608
    else:
        group_source = "VALUES {rows}"  # as many rows as the chunk has (groups_for)
    log_names = ", ".join(name for name, _ in _LOG_COLUMNS_SQL)
    return _Sql(
        silences=(
            "SELECT id, kind, team_id, entity_id, matchers FROM alert_silences"  # noqa: S608
            f" WHERE team_id = {p} AND starts_at <= {p} AND ends_at > {p}"
            " AND expired_at IS NULL"
        ),
        # PostgreSQL: one index lookup per key, as a LATERAL join on the keys, whatever the
        # statistics and the plan cache say. An IN (SELECT …) became a hash join over every
        # open alert of the integration; = ANY(ARRAY(…)), once psycopg prepared it, a scan of
        # them all with the keys as a filter (the one-group flood fell from 4,000 to 900
        # events/s as the group grew). The LIMIT 1 (the unique index holds one row a key)
        # keeps PostgreSQL from pulling the subquery up into a plain join, which on a table
        # not yet analysed it planned as that same hash join: 32 ms a lookup of 400 keys
        # instead of 0.7 ms, and batches at 18,000 alerts/s until autovacuum's first pass.
        open_alerts=(
            "SELECT a.dedup_key, a.group_id FROM json_array_elements_text(%s::json) AS k(key)"
            " CROSS JOIN LATERAL (SELECT dedup_key, group_id FROM alerts"
            " WHERE integration_id = %s AND dedup_key = k.key AND status <> 'resolved'"
            " LIMIT 1) AS a"
            if pg
            else "SELECT dedup_key, group_id FROM alerts WHERE integration_id = ?"
            " AND dedup_key IN (SELECT value FROM json_each(?)) AND status <> 'resolved'"
        ),
        accepting_groups=(
            "SELECT g.id, g.group_key FROM json_array_elements_text(%s::json) AS k(key)"
            " CROSS JOIN LATERAL (SELECT id, group_key FROM alert_groups"
            " WHERE integration_id = %s AND group_key = k.key AND accepting"
            " AND created_at >= %s LIMIT 1) AS g"
            if pg
            else "SELECT id, group_key FROM alert_groups WHERE integration_id = ?"
            " AND accepting AND created_at >= ? AND group_key IN (SELECT value FROM json_each(?))"
        ),
        count_into=(
            "UPDATE alert_groups SET severity = CASE WHEN "  # noqa: S608
            + _RANK.format(f"{p}" + ("::text" if pg else ""))
            + " > "
            + _RANK.format("severity")
            + f" THEN {p} ELSE severity END,"
            f" alert_count = alert_count + {p}, last_alert_at = {p}"
            f" WHERE id = {p} AND accepting RETURNING id"
        ),
        stale=(
            f"UPDATE alert_groups SET accepting = {p}"  # noqa: S608
            f" WHERE integration_id = {p} AND accepting AND created_at < {p}"
        ),
        groups=(
            f"INSERT INTO alert_groups ({group_names}) {group_source}"
            " ON CONFLICT (integration_id, group_key) WHERE accepting DO UPDATE SET"
            " severity = CASE WHEN "
            + _RANK.format("excluded.severity")
            + " > "
            + _RANK.format("alert_groups.severity")
            + " THEN excluded.severity ELSE alert_groups.severity END,"
            " alert_count = alert_groups.alert_count + excluded.alert_count,"
            " last_alert_at = excluded.last_alert_at"
            " RETURNING id, integration_id, group_key, opened_by"
        ),
        alerts=(
            f"INSERT INTO alerts ({names}) {alert_source}"
            " ON CONFLICT (integration_id, dedup_key) WHERE status <> 'resolved' DO UPDATE SET"
            " last_seen_at = excluded.last_seen_at,"
            " occurrences = alerts.occurrences + excluded.occurrences,"
            " summary = excluded.summary, severity = excluded.severity,"
            " labels = excluded.labels, annotations = excluded.annotations,"
            " details = excluded.details, runbook_url = excluded.runbook_url"
        ),
        log=(
            f"INSERT INTO alert_group_log ({log_names})"  # noqa: S608
            f" VALUES ({_placeholders(dialect, _LOG_COLUMNS_SQL)})"
        ),
        time=_pg_time if pg else _sqlite_time,
        key_list=_json_text,
        columnar=pg,
    )


_SQL: dict[str, _Sql] = {}
_GROUPS_SQL: dict[int, str] = {}
GROUPS_PER_STATEMENT = 500  # SQLite: 16 parameters a group, well under its 32,766


def _sql(session: Session) -> _Sql:
    dialect = session.get_bind().dialect.name
    found = _SQL.get(dialect)
    if found is None:
        found = _SQL[dialect] = _build_sql(dialect)
    return found


def _upsert_groups(
    session: Session,
    groups: dict[tuple[int, str], _NewGroup],
    batch: str,
    now: dt.datetime,
) -> dict[tuple[int, str], tuple[int, str]]:
    """(integration, group key) -> (group id, the batch that opened it)."""
    if not groups:
        return {}
    sql = _sql(session)
    cursor = driver_cursor(session, write=True)
    windows = {g.integration.id: g.integration.group_window_s for g in groups.values()}
    cursor.executemany(
        sql.stale,
        [
            (False, integration_id, sql.time(now - dt.timedelta(seconds=window_s)))
            for integration_id, window_s in windows.items()
        ],
    )
    # PostgreSQL takes the rows as one JSON document (orjson writes the times and labels);
    # SQLite as a VALUES list. In key order, so two transactions lock them in the same order.
    text: Any = _identity if sql.columnar else _json_text
    stamp = sql.time(now)
    rows = [
        (
            g.integration.id,
            g.integration.team_id,
            g.integration.entity_id,
            g.group_key,
            True,
            AlertStatus.TRIGGERED.value,
            g.severity,
            clip(g.first.summary, 1024),
            _kind(g.first),
            g.first.runbook_url and g.first.runbook_url[:2048],
            text(_labels(g.first)),
            g.count,
            g.policy_id,
            batch,
            stamp,
            stamp,
        )
        for _, g in sorted(groups.items(), key=lambda item: item[0])
    ]
    result: dict[tuple[int, str], tuple[int, str]] = {}
    for start in range(0, len(rows), GROUPS_PER_STATEMENT):
        chunk = rows[start : start + GROUPS_PER_STATEMENT]
        if sql.columnar:
            names = [name for name, _ in _GROUP_COLUMNS_SQL]
            document = orjson.dumps([dict(zip(names, row, strict=True)) for row in chunk])
            cursor.execute(sql.groups, (document.decode(),))
        else:
            cursor.execute(sql.groups_for(len(chunk)), [value for row in chunk for value in row])
        for group_id, integration_id, group_key, opened_by in cursor.fetchall():
            result[(integration_id, group_key)] = (group_id, opened_by)
    return result


def _accepting_groups(
    session: Session, groups: dict[tuple[int, str], _NewGroup], now: dt.datetime
) -> dict[tuple[int, str], int]:
    """(integration, group key) -> the id of the group open to those alerts now (accepting,
    within its grouping window); read without a lock (:func:`_count_into` checks again)."""
    if not groups:
        return {}
    sql = _sql(session)
    windows = {key[0]: group.integration.group_window_s for key, group in groups.items()}

    def since(integration_id: int) -> tuple[Any, ...]:
        return (sql.time(now - dt.timedelta(seconds=windows[integration_id])),)

    rows = _by_keys(session, sql.accepting_groups, groups, since)
    return {(integration_id, group_key): group_id for integration_id, (group_id, group_key) in rows}


def _count_into(
    session: Session,
    joined: dict[tuple[int, str], tuple[int, _NewGroup]],
    now: dt.datetime,
) -> list[tuple[int, str]]:
    """Add the batch's alerts to the counts (and severity) of the groups they joined, in the
    order of the groups' ids (two transactions never wait for each other in a circle); the keys
    of the groups that no longer accept alerts."""
    if not joined:
        return []
    sql = _sql(session)
    cursor = driver_cursor(session, write=True)
    stamp = sql.time(now)
    closed: list[tuple[int, str]] = []
    for gkey, (group_id, group) in sorted(joined.items(), key=lambda item: item[1][0]):
        cursor.execute(
            sql.count_into, (group.severity, group.severity, group.count, stamp, group_id)
        )
        if cursor.fetchone() is None:
            closed.append(gkey)
    return closed


def _move_alerts(
    session: Session,
    moved: dict[tuple[int, str], tuple[int, str]],
    closed: Sequence[tuple[int, str]],
    group_of_alert: dict[tuple[int, str], tuple[int, str]],
) -> None:
    """The batch's alerts of groups that closed under it go to the groups opened for them."""
    wanted = set(closed)
    by_group: dict[int, list[tuple[int, str]]] = {}
    for key, gkey in group_of_alert.items():
        if gkey in wanted:
            by_group.setdefault(moved[gkey][0], []).append(key)
    for group_id, keys in by_group.items():
        for chunk in _chunks(keys):
            session.execute(
                sa.update(Alert)
                .where(
                    sa.tuple_(Alert.integration_id, Alert.dedup_key).in_(list(chunk)),
                    Alert.status != AlertStatus.RESOLVED.value,
                )
                .values(group_id=group_id)
                .execution_options(synchronize_session=False)
            )


def _upsert_alerts(
    session: Session,
    triggers: Sequence[_Folded],
    existing: dict[tuple[int, str], int | None],
    group_of_alert: dict[tuple[int, str], tuple[int, str]],
    group_ids: dict[tuple[int, str], tuple[int, str]],
    silence_of: dict[tuple[int, str], int],
    now: dt.datetime,
) -> None:
    sql = _sql(session)
    # SQLite takes JSON as text and times as SQLAlchemy writes them; PostgreSQL takes one JSON
    # document of the rows (orjson writes the values and the times itself).
    text: Any = _identity if sql.columnar else _json_text
    time: Any = _identity if sql.columnar else _sqlite_time
    stamp = time(now)
    triggered = AlertStatus.TRIGGERED.value
    rows = []
    for item in triggers:
        alert = item.trigger
        assert alert is not None
        key = (item.integration.id, item.dedup_key)
        gkey = group_of_alert.get(key)
        group_id = group_ids[gkey][0] if gkey is not None else existing.get(key)
        details: dict[str, Any] = dict(alert.details)
        if alert.links:
            details["links"] = [list(link) for link in alert.links]
        if alert.images:
            details["images"] = [list(image) for image in alert.images]
        if alert.source_url:
            details["source_url"] = alert.source_url
        if alert.group_key:
            details["group_key"] = alert.group_key
        summary = alert.summary
        rows.append(
            (
                item.integration.id,
                group_id,
                silence_of.get(key),
                item.dedup_key,
                triggered,
                alert.severity,
                summary if len(summary) <= 1024 else clip(summary, 1024),
                clip(alert.source, 1024),
                _kind(alert),
                text(alert.labels),
                text(alert.annotations),
                text(details),
                alert.runbook_url and alert.runbook_url[:2048],
                time(alert.starts_at),
                None,
                item.occurrences,
                stamp,
                stamp,
                None,
            )
        )
    # In key order: two transactions upserting the same alerts (Alertmanager's HA pair sends
    # each notification from both) take their row locks in the same order and never deadlock.
    rows.sort(key=lambda row: (row[0], row[3]))
    cursor = driver_cursor(session, write=True)
    if sql.columnar:
        names = [name for name, _ in _ALERT_COLUMNS_SQL]
        document = orjson.dumps([dict(zip(names, row, strict=True)) for row in rows])
        cursor.execute(sql.alerts, (document.decode(),))
    else:
        cursor.executemany(sql.alerts, rows)


def _identity(value: Any) -> Any:
    return value


def _insert_log(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    sql = _sql(session)
    driver_cursor(session, write=True).executemany(
        sql.log,
        [
            (
                row["group_id"],
                sql.time(row["at"]),
                row["what"],
                row["actor_user_id"],
                _json_text(row["detail"]),
            )
            for row in rows
        ],
    )


def _key_filter(items: Sequence[_Folded]) -> list[tuple[int, str]]:
    return [(item.integration.id, item.dedup_key) for item in items]


_GROUP_COLUMNS = (
    AlertGroup.id,
    AlertGroup.team_id,
    AlertGroup.entity_id,
    AlertGroup.integration_id,
    AlertGroup.summary,
    AlertGroup.severity,
)


def _acknowledge_by_key(
    session: Session, items: Sequence[_Folded], now: dt.datetime
) -> list[sa.Row[Any]]:
    group_ids: set[int] = set()
    for chunk in _chunks(_key_filter(items)):
        result = session.execute(
            sa.update(Alert)
            .where(
                sa.tuple_(Alert.integration_id, Alert.dedup_key).in_(list(chunk)),
                Alert.status == AlertStatus.TRIGGERED.value,
            )
            .values(status=AlertStatus.ACKNOWLEDGED.value, last_seen_at=now)
            .returning(Alert.group_id)
            .execution_options(synchronize_session=False)
        )
        group_ids.update(gid for (gid,) in result if gid is not None)
    if not group_ids:
        return []
    return list(
        session.execute(
            sa.update(AlertGroup)
            .where(
                AlertGroup.id.in_(group_ids),
                AlertGroup.status == AlertStatus.TRIGGERED.value,
            )
            .values(status=AlertStatus.ACKNOWLEDGED.value, acknowledged_at=now)
            .returning(*_GROUP_COLUMNS)
            .execution_options(synchronize_session=False)
        )
    )


def resolve_groups_without_open_alerts(
    session: Session, group_ids: Iterable[int], now: dt.datetime
) -> list[sa.Row[Any]]:
    """Resolve the groups among ``group_ids`` none of whose alerts is open any more."""
    ids = set(group_ids)
    if not ids:
        return []
    still_open = (
        sa.select(Alert.id).where(Alert.group_id == AlertGroup.id, Alert.status.in_(OPEN)).exists()
    )
    return list(
        session.execute(
            sa.update(AlertGroup)
            .where(
                AlertGroup.id.in_(ids),
                AlertGroup.status != AlertStatus.RESOLVED.value,
                ~still_open,
            )
            .values(status=AlertStatus.RESOLVED.value, resolved_at=now, accepting=False)
            .returning(*_GROUP_COLUMNS)
            .execution_options(synchronize_session=False)
        )
    )


def _resolve_by_key(
    session: Session, items: Sequence[_Folded], now: dt.datetime
) -> list[sa.Row[Any]]:
    group_ids: set[int] = set()
    for chunk in _chunks(_key_filter(items)):
        result = session.execute(
            sa.update(Alert)
            .where(
                sa.tuple_(Alert.integration_id, Alert.dedup_key).in_(list(chunk)),
                Alert.status.in_(OPEN),
            )
            .values(status=AlertStatus.RESOLVED.value, resolved_at=now, ends_at=now)
            .returning(Alert.group_id)
            .execution_options(synchronize_session=False)
        )
        group_ids.update(gid for (gid,) in result if gid is not None)
    return resolve_groups_without_open_alerts(session, group_ids, now)
