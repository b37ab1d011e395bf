"""The ingest path's write: many senders' alerts in one transaction, set-based.

:func:`write` takes the submissions the group committer gathered (``committer.py``) — each an
integration and the alerts one request carried — and stores them all with a handful of
statements, whatever their number:

1. fold the batch by (integration, dedup key): the last trigger's content wins, occurrences
   add up, a later acknowledge or resolve applies after it;
2. read the active silences and maintenance windows of the teams concerned (one query) and
   the open alerts among the keys (one query per thousand keys);
3. close groups whose grouping window has passed (one UPDATE per integration), then upsert
   the groups the new alerts belong to — ``INSERT … ON CONFLICT (integration_id, group_key)
   WHERE accepting DO UPDATE … RETURNING``: the partial unique index decides, across
   processes, which transaction opened a group (``opened_by`` is set on insert only);
4. upsert the alerts — ``ON CONFLICT (integration_id, dedup_key) WHERE status <> 'resolved'``;
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

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from lamplighter.alerting import matchers
from lamplighter.alerting.event_types import GroupAcknowledged, GroupResolved, GroupTriggered
from lamplighter.alerting.intake import IncomingAlert, clip
from lamplighter.alerting.integrations import Snapshot
from lamplighter.alerting.models import (
    SEVERITY_RANK,
    Alert,
    AlertGroup,
    AlertGroupLog,
    AlertStatus,
    Silence,
    SilenceKind,
)
from lamplighter.catalog.models import Entity
from lamplighter.core import events
from lamplighter.core.db import Database, utcnow

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


@dataclass
class _Folded:
    integration: Snapshot
    dedup_key: str
    trigger: IncomingAlert | None = None
    occurrences: int = 0
    after: str | None = None  # "acknowledge" | "resolve", applied after the trigger


@dataclass
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
        group_ids = _upsert_groups(session, new_groups, batch, now)
        for gkey, (group_id, opened_by) in group_ids.items():
            if opened_by == batch:
                opened[gkey] = group_id
        _upsert_alerts(session, triggers, existing, group_of_alert, group_ids, silence_of, now)
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
        session.execute(_statements(session)["log"], log_rows)
    if pending:
        events.emit_many(session=session, pending=pending)
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
        return IncomingAlert(**{**alert.__dict__, "severity": severity})
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
    teams = sorted({item.integration.team_id for item in triggers})
    rows = session.execute(_statements(session)["silences"], {"teams": teams, "now": now}).all()
    if not rows:
        return {}
    parsed = [
        (row.id, row.kind, row.team_id, row.entity_id, matchers.parse_all(row.matchers, "")[0])
        for row in rows
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
    found: dict[tuple[int, str], int | None] = {}
    statement = _statements(session)["open_alerts"]
    for chunk in _chunks(keys):
        rows = session.execute(statement, {"keys": list(chunk)})
        for integration_id, dedup_key, group_id in rows:
            found[(integration_id, dedup_key)] = group_id
    return found


def _insert(dialect: str, table: Any) -> Any:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _rank(column: Any) -> Any:
    return sa.case(SEVERITY_RANK, value=column, else_=0)


_GROUPS = cast(sa.Table, AlertGroup.__table__)
_ALERTS = cast(sa.Table, Alert.__table__)
_STATEMENTS: dict[str, dict[str, Any]] = {}


def _statements(session: Session) -> dict[str, Any]:
    """The hot path's statements, built once per dialect on the Core tables: building an
    ``ON CONFLICT`` statement and its ``excluded`` alias costs more than running it."""
    dialect = session.get_bind().dialect.name
    found = _STATEMENTS.get(dialect)
    if found is not None:
        return found
    groups = _insert(dialect, _GROUPS)
    groups = groups.on_conflict_do_update(
        index_elements=["integration_id", "group_key"],
        index_where=sa.text("accepting"),
        set_={
            "last_alert_at": groups.excluded.last_alert_at,
            "alert_count": _GROUPS.c.alert_count + groups.excluded.alert_count,
            "severity": sa.case(
                (
                    _rank(groups.excluded.severity) > _rank(_GROUPS.c.severity),
                    groups.excluded.severity,
                ),
                else_=_GROUPS.c.severity,
            ),
        },
    ).returning(_GROUPS.c.id, _GROUPS.c.integration_id, _GROUPS.c.group_key, _GROUPS.c.opened_by)
    alerts = _insert(dialect, _ALERTS)
    alerts = alerts.on_conflict_do_update(
        index_elements=["integration_id", "dedup_key"],
        index_where=sa.text("status <> 'resolved'"),
        set_={
            "last_seen_at": alerts.excluded.last_seen_at,
            "occurrences": _ALERTS.c.occurrences + alerts.excluded.occurrences,
            "summary": alerts.excluded.summary,
            "severity": alerts.excluded.severity,
            "labels": alerts.excluded.labels,
            "annotations": alerts.excluded.annotations,
            "details": alerts.excluded.details,
            "runbook_url": alerts.excluded.runbook_url,
        },
    )
    stale = (
        sa.update(_GROUPS)
        .where(
            _GROUPS.c.integration_id == sa.bindparam("b_integration_id"),
            _GROUPS.c.accepting.is_(True),
            _GROUPS.c.created_at < sa.bindparam("cutoff"),
        )
        .values(accepting=False)
    )
    open_alerts = sa.select(
        _ALERTS.c.integration_id, _ALERTS.c.dedup_key, _ALERTS.c.group_id
    ).where(
        sa.tuple_(_ALERTS.c.integration_id, _ALERTS.c.dedup_key).in_(
            sa.bindparam("keys", expanding=True)
        ),
        _ALERTS.c.status.in_(OPEN),
    )
    silences = (
        sa.select(Silence.id, Silence.kind, Silence.team_id, Silence.entity_id, Silence.matchers)
        .where(
            Silence.team_id.in_(sa.bindparam("teams", expanding=True)),
            Silence.starts_at <= sa.bindparam("now"),
            Silence.ends_at > sa.bindparam("now"),
            Silence.expired_at.is_(None),
        )
        .order_by(Silence.id)
    )
    found = _STATEMENTS[dialect] = {
        "groups": groups,
        "alerts": alerts,
        "stale": stale,
        "open_alerts": open_alerts,
        "silences": silences,
        "log": sa.insert(cast(sa.Table, AlertGroupLog.__table__)),
    }
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
    statements = _statements(session)
    windows = {g.integration.id: g.integration.group_window_s for g in groups.values()}
    session.execute(
        statements["stale"],
        [
            {"b_integration_id": integration_id, "cutoff": now - dt.timedelta(seconds=window_s)}
            for integration_id, window_s in windows.items()
        ],
    )
    rows = [
        {
            "integration_id": g.integration.id,
            "team_id": g.integration.team_id,
            "entity_id": g.integration.entity_id,
            "group_key": g.group_key,
            "accepting": True,
            "status": AlertStatus.TRIGGERED.value,
            "severity": g.severity,
            "summary": clip(g.first.summary, 1024),
            "kind": _kind(g.first),
            "runbook_url": g.first.runbook_url and g.first.runbook_url[:2048],
            "labels": _labels(g.first),
            "alert_count": g.count,
            "policy_id": g.policy_id,
            "opened_by": batch,
            "created_at": now,
            "last_alert_at": now,
        }
        for g in groups.values()
    ]
    statement = statements["groups"]
    result: dict[tuple[int, str], tuple[int, str]] = {}
    for row in session.execute(statement, rows):
        result[(row.integration_id, row.group_key)] = (row.id, row.opened_by)
    return result


def _upsert_alerts(
    session: Session,
    triggers: Sequence[_Folded],
    existing: dict[tuple[int, str], int | None],
    group_of_alert: dict[tuple[int, str], tuple[int, str]],
    group_ids: dict[tuple[int, str], tuple[int, str]],
    silence_of: dict[tuple[int, str], int],
    now: dt.datetime,
) -> None:
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
        rows.append(
            {
                "integration_id": item.integration.id,
                "group_id": group_id,
                "silence_id": silence_of.get(key),
                "dedup_key": item.dedup_key,
                "status": AlertStatus.TRIGGERED.value,
                "severity": alert.severity,
                "summary": clip(alert.summary, 1024),
                "source": clip(alert.source, 1024),
                "kind": _kind(alert),
                "labels": dict(alert.labels),
                "annotations": dict(alert.annotations),
                "details": details,
                "runbook_url": alert.runbook_url and alert.runbook_url[:2048],
                "starts_at": alert.starts_at,
                "ends_at": None,
                "occurrences": item.occurrences,
                "created_at": now,
                "last_seen_at": now,
                "resolved_at": None,
            }
        )
    statement = _statements(session)["alerts"]
    session.execute(statement, rows)


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
