"""SLO rules: define, change and remove SLOs, take in built-in events, read status, history and
the error budget policy. Everything else (API, CLI, pages, the worker) calls these.

An SLO is owned like the catalog entity it belongs to: members of the entity's owning team,
SREs and admins change it; everyone signed in reads it. Every change is audited.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity
from lamplighter.core import audit, crypto, events
from lamplighter.core.authz import require_owned_write, require_writer
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from lamplighter.core.models import Team, User
from lamplighter.slo import engine
from lamplighter.slo.event_types import (
    FreezeExceptionGranted,
    SloCreated,
    SloDeleted,
    SloUpdated,
)
from lamplighter.slo.models import (
    DAY,
    HOUR,
    MINUTE,
    FreezeException,
    ProbeResult,
    Slo,
    SloCount,
)
from lamplighter.slo.schemas import SloIn

OBJECT_TYPE = "slo"
ENTITY_KINDS = ("service", "api", "component", "system", "resource")
DEFAULT_POLICY: dict[str, Any] = {"notify_at": [50, 75], "notify": "team", "on_exhausted": "freeze"}
# Built-in points this far back or ahead are refused: older ones would not change any window
# still shown, and a clock far ahead is a sender's mistake.
MAX_AGE = dt.timedelta(days=400)
MAX_AHEAD = dt.timedelta(minutes=5)
WINDOW_DAYS = {"7d": 7, "28d": 28, "30d": 30}


# -- conversions -------------------------------------------------------------------------------


def window_of(slo: Any) -> engine.Window:
    if slo.window_kind == "calendar_week":
        return engine.Window.calendar_week(slo.time_zone)
    if slo.window_kind == "calendar_month":
        return engine.Window.calendar_month(slo.time_zone)
    return engine.Window.rolling(slo.window_days or 30, slo.time_zone)


def window_name(slo: Slo) -> str:
    if slo.window_kind == "rolling":
        return f"{slo.window_days}d"
    return slo.window_kind.replace("_", "-")


def window_days_of(slo: Any) -> int:
    """The days the burn-rate factors are scaled to: 7 for a calendar week, 30 for a month."""
    if slo.window_kind == "calendar_week":
        return 7
    if slo.window_kind == "calendar_month":
        return 30
    return slo.window_days or 30


def _values(data: SloIn) -> dict[str, Any]:
    if data.window in WINDOW_DAYS:
        kind, days = "rolling", WINDOW_DAYS[data.window]
    else:
        kind, days = data.window.replace("-", "_"), None
    sli: dict[str, Any] | None = data.sli.model_dump(exclude_none=True) if data.sli else None
    if data.source == "events" and sli is None:
        sli = {"kind": "ratio"}
    if data.source == "probe":
        sli = {"kind": "probe"}
    return {
        "name": data.name,
        "description": data.description,
        "objective": round(data.objective / 100, 12),
        "window_kind": kind,
        "window_days": days,
        "time_zone": data.time_zone,
        "budgeting": data.budgeting,
        "slice_seconds": data.slice_minutes * 60 if data.slice_minutes else None,
        "slice_threshold": round(data.slice_threshold / 100, 12) if data.slice_threshold else None,
        "source": data.source,
        "sli": sli or {},
        "probe": data.probe.model_dump() if data.probe else None,
        "alerting": data.alerting.model_dump(),
        "labels": dict(data.labels),
        "policy": data.policy.model_dump(exclude_none=True),
    }


def content_hash(entity_id: int, values: dict[str, Any]) -> str:
    return hashlib.sha256(
        audit.canonical_json({"entity": entity_id, **values}).encode()
    ).hexdigest()


def snapshot(slo: Slo, entity_ref: str) -> dict[str, Any]:
    return {
        "entity": entity_ref,
        "name": slo.name,
        "description": slo.description,
        "objective": slo.objective,
        "window": window_name(slo),
        "time_zone": slo.time_zone,
        "budgeting": slo.budgeting,
        "slice_seconds": slo.slice_seconds,
        "slice_threshold": slo.slice_threshold,
        "source": slo.source,
        "sli": slo.sli,
        "probe": slo.probe,
        "alerting": slo.alerting,
        "labels": slo.labels,
        "policy": slo.policy,
        "origin": slo.origin,
    }


def percent(ratio: float | None) -> float | None:
    return None if ratio is None else round(ratio * 100, 6)


def input_of(slo: Slo, entity_ref: str) -> dict[str, Any]:
    """The SLO as :class:`SloIn` fields (what ``slo get --output json`` gives to edit back)."""
    sli = {k: v for k, v in slo.sli.items()} if slo.source != "probe" else None
    return {
        "entity": entity_ref,
        "name": slo.name,
        "description": slo.description,
        "objective": percent(slo.objective),
        "window": window_name(slo),
        "time_zone": slo.time_zone,
        "budgeting": slo.budgeting,
        "slice_minutes": slo.slice_seconds // 60 if slo.slice_seconds else None,
        "slice_threshold": percent(slo.slice_threshold),
        "source": slo.source,
        "sli": sli,
        "probe": slo.probe,
        "alerting": slo.alerting,
        "labels": slo.labels,
        "policy": slo.policy,
    }


# -- reading -----------------------------------------------------------------------------------


def get(*, session: Session, slo_id: int) -> Slo:
    slo = session.get(Slo, slo_id)
    if slo is None:
        raise NotFound(f"no SLO {slo_id}")
    return slo


def entity_of(session: Session, slo: Slo) -> Entity:
    entity = session.get(Entity, slo.entity_id)
    assert entity is not None  # the foreign key cascades
    return entity


def find(*, session: Session, entity_ref: str, name: str) -> Slo:
    entity = catalog.get_by_ref(session=session, ref=entity_ref, field="entity")
    slo = session.scalar(sa.select(Slo).where(Slo.entity_id == entity.id, Slo.name == name))
    if slo is None:
        raise NotFound(f"{entity.ref} has no SLO {name!r}")
    return slo


def read(*, session: Session, slo: Slo) -> dict[str, Any]:
    """The SLO's definition as the API answers it (:class:`SloRead`)."""
    entity = entity_of(session, slo)
    team = session.get(Team, entity.owner_team_id) if entity.owner_team_id else None
    return {
        **input_of(slo, entity.ref),
        "id": slo.id,
        "owner_team": team.slug if team else None,
        "probe": slo.probe,
        "policy": effective_policy(slo, entity.tier),
        "origin": slo.origin,
        "ingest_key_hint": slo.ingest_key_hint,
        "created_at": slo.created_at,
        "updated_at": slo.updated_at,
    }


def effective_policy(slo: Any, tier: int | None = None) -> dict[str, Any]:
    """The SLO's policy over the defaults for its entity's tier (settings), over the built-in
    default: tell the team at 50 % and 75 % spent, freeze releases at 100 %."""
    from lamplighter.slo.settings import tier_policy  # settings read the environment once

    return {**DEFAULT_POLICY, **tier_policy(tier), **slo.policy}


def status_of(*, session: Session, slo: Slo) -> dict[str, Any]:
    """The last evaluation as the API answers it (:class:`SloStatusRead`)."""
    entity = entity_of(session, slo)
    return status_document(slo, entity.ref, entity.tier)


def status_document(slo: Any, entity_ref: str, tier: int | None) -> dict[str, Any]:
    """:func:`status_of` from an SLO or a row with its columns' names (the API's one-statement
    read, ``status_view``), so that both answer the same document."""
    alerts = []
    factors = slo.alerting.get("factors", {})
    for name, rule in alert_rules_of(slo):
        alerts.append(
            {
                "name": name,
                "severity": rule.severity.value,
                "long_window": engine_duration(rule.long_window),
                "short_window": engine_duration(rule.short_window),
                "factor": factors.get(name, rule.burn_rate_factor),
                "long_burn_rate": slo.burn_rates.get(engine_duration(rule.long_window)),
                "short_burn_rate": slo.burn_rates.get(engine_duration(rule.short_window)),
                "enabled": bool(slo.alerting.get(rule.severity.value, True)),
                "firing": name in slo.firing,
            }
        )
    return {
        "id": slo.id,
        "entity": entity_ref,
        "name": slo.name,
        "status": slo.status,
        "reason": slo.status_reason,
        "evaluated_at": slo.evaluated_at,
        "window_start": slo.window_start,
        "window_end": slo.window_end,
        "objective": percent(slo.objective),
        "attainment": percent(slo.attainment),
        "good_events": slo.good_events,
        "total_events": slo.total_events,
        "budget_unit": "seconds" if slo.budgeting == "timeslices" else "events",
        "budget_total": slo.budget_total,
        "budget_spent": slo.budget_spent,
        "budget_remaining": percent(slo.budget_remaining),
        "burn_rates": dict(slo.burn_rates),
        "alerts": alerts,
        "exhaustion_at": slo.exhaustion_at,
        "policy": effective_policy(slo, tier),
        "frozen": bool(slo.frozen),
    }


BURN_WINDOWS: tuple[dt.timedelta, ...] = tuple(
    dt.timedelta(minutes=m) for m in (5, 30, 60, 120, 360, 1440, 4320)
)


def engine_duration(length: dt.timedelta) -> str:
    seconds = int(length.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


ALERT_NAMES = {
    ("page", dt.timedelta(hours=1)): "page-1h",
    ("page", dt.timedelta(hours=6)): "page-6h",
    ("ticket", dt.timedelta(days=1)): "ticket-1d",
    ("ticket", dt.timedelta(days=3)): "ticket-3d",
}


def alert_rules_of(slo: Any) -> list[tuple[str, engine.AlertRule]]:
    """The Workbook's four alerts scaled to the SLO's window, with its own factor overrides."""
    factors = slo.alerting.get("factors", {})
    found = []
    for rule in engine.alert_rules(window_days_of(slo)):
        name = ALERT_NAMES[(rule.severity.value, rule.long_window)]
        if name in factors:
            rule = engine.AlertRule(
                severity=rule.severity,
                long_window=rule.long_window,
                short_window=rule.short_window,
                budget_fraction=rule.budget_fraction,
                burn_rate_factor=float(factors[name]),
            )
        found.append((name, rule))
    return found


@dataclass(frozen=True)
class ListFilters:
    team_id: int | None = None
    entity_id: int | None = None
    status: str | None = None
    source: str | None = None


# Cursor for the list sorted by remaining budget (least first, no data last), then id.
def encode_cursor(remaining: float | None, slo_id: int) -> str:
    raw = orjson.dumps({"r": remaining, "id": slo_id})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[float | None, int] | None:
    if not cursor:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        remaining, slo_id = value["r"], value["id"]
        if remaining is not None and not isinstance(remaining, int | float):
            raise ValueError
        if not isinstance(slo_id, int) or isinstance(slo_id, bool) or not 0 <= slo_id < 2**62:
            raise ValueError
        return (None if remaining is None else float(remaining)), slo_id
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise ValidationFailed.one("query.cursor", "not a cursor this server issued") from exc


def list_(
    *, session: Session, filters: ListFilters, cursor: str | None = None, limit: int = 50
) -> tuple[list[Slo], str | None]:
    """SLOs with the least budget left first (no data last), with a cursor for the next page."""
    query = sa.select(Slo).join(Entity, Entity.id == Slo.entity_id)
    if filters.team_id is not None:
        query = query.where(Entity.owner_team_id == filters.team_id)
    if filters.entity_id is not None:
        query = query.where(Slo.entity_id == filters.entity_id)
    if filters.status is not None:
        query = query.where(Slo.status == filters.status)
    if filters.source is not None:
        query = query.where(Slo.source == filters.source)
    nulls_last = sa.case((Slo.budget_remaining.is_(None), 1), else_=0)
    after = decode_cursor(cursor)
    if after is not None:
        remaining, last_id = after
        if remaining is None:
            query = query.where(Slo.budget_remaining.is_(None), Slo.id > last_id)
        else:
            query = query.where(
                sa.or_(
                    Slo.budget_remaining.is_(None),
                    Slo.budget_remaining > remaining,
                    sa.and_(Slo.budget_remaining == remaining, Slo.id > last_id),
                )
            )
    query = query.order_by(nulls_last, Slo.budget_remaining, Slo.id).limit(limit + 1)
    rows = list(session.scalars(query))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].budget_remaining, rows[-1].id)
    return rows, next_cursor


def of_entity(*, session: Session, entity_id: int) -> list[Slo]:
    return list(
        session.scalars(
            sa.select(Slo).where(Slo.entity_id == entity_id).order_by(Slo.budget_remaining, Slo.id)
        )
    )


def of_team(*, session: Session, team_id: int) -> list[tuple[Slo, Entity]]:
    rows = session.execute(
        sa.select(Slo, Entity)
        .join(Entity, Entity.id == Slo.entity_id)
        .where(Entity.owner_team_id == team_id)
        .order_by(Slo.budget_remaining, Slo.id)
    ).all()
    return [(slo, entity) for slo, entity in rows]


def latest_probe_results(*, session: Session, slo_id: int, limit: int = 20) -> list[ProbeResult]:
    """The newest probe results of a probe SLO, newest first."""
    return list(
        session.scalars(
            sa.select(ProbeResult)
            .where(ProbeResult.slo_id == slo_id)
            .order_by(ProbeResult.at.desc(), ProbeResult.id.desc())
            .limit(limit)
        )
    )


# -- writing -----------------------------------------------------------------------------------


def _entity_for(session: Session, actor: Actor, ref: str) -> Entity:
    entity = catalog.get_by_ref(session=session, ref=ref, field="body.entity", kinds=ENTITY_KINDS)
    require_owned_write(actor, entity.owner_team_id, f"the SLOs of {entity.ref}")
    return entity


def _check_probe_url(session: Session, entity: Entity, values: dict[str, Any]) -> None:
    probe = values.get("probe")
    if probe is None or probe.get("url"):
        return
    url = health_link(entity)
    if url is None:
        raise ValidationFailed.one(
            "body.probe.url",
            f"{entity.ref} has no health link in the catalog (a link with type or title "
            "'health'); give the URL to probe",
        )


def health_link(entity: Entity) -> str | None:
    """The entity's health link from the catalog: a link of type or title "health"."""
    for link in entity.links or []:
        kind = str(link.get("type") or "").lower()
        title = str(link.get("title") or "").lower()
        if "health" in kind or "health" in title or str(link.get("icon", "")) == "health":
            url = str(link.get("url") or "")
            if url.startswith(("http://", "https://")):
                return url
    return None


def _new_key(slo: Slo) -> str:
    key = "llslo_" + crypto.new_token()
    slo.ingest_key_hash = crypto.digest(key)
    slo.ingest_key_hint = key[-4:]
    return key


def create(
    *, session: Session, actor: Actor, data: SloIn, origin: str | None = None
) -> tuple[Slo, str | None]:
    """Define an SLO; returns it and, for the built-in events source, its ingest key (once)."""
    require_writer(actor, "define SLOs")
    entity = _entity_for(session, actor, data.entity)
    values = _values(data)
    _check_probe_url(session, entity, values)
    if session.scalar(sa.select(Slo.id).where(Slo.entity_id == entity.id, Slo.name == data.name)):
        raise Conflict(f"{entity.ref} already has an SLO named {data.name!r}")
    slo = Slo(entity_id=entity.id, origin=origin, **values)
    slo.content_hash = content_hash(entity.id, values)
    key = _new_key(slo) if data.source == "events" else None
    session.add(slo)
    session.flush()
    after = snapshot(slo, entity.ref)
    audit.record(
        session=session,
        actor=actor,
        action="slo.create",
        object_type=OBJECT_TYPE,
        object_id=slo.id,
        after=after,
    )
    events.emit(
        session=session,
        type="slo.created",
        subject=f"slo:{slo.id}",
        payload=SloCreated(id=slo.id, slo=slo.name, entity=entity.ref),
    )
    return slo, key


def update(
    *, session: Session, actor: Actor, slo_id: int, data: SloIn, origin: str | None = None
) -> tuple[Slo, bool]:
    """Replace an SLO's definition; returns it and whether anything changed. Its counters and
    history stay; a new window or objective takes effect at the next evaluation."""
    slo = get(session=session, slo_id=slo_id)
    old_entity = entity_of(session, slo)
    require_owned_write(actor, old_entity.owner_team_id, f"the SLOs of {old_entity.ref}")
    entity = _entity_for(session, actor, data.entity)
    values = _values(data)
    _check_probe_url(session, entity, values)
    new_hash = content_hash(entity.id, values)
    if new_hash == slo.content_hash and entity.id == slo.entity_id:
        return slo, False
    clash = session.scalar(
        sa.select(Slo.id).where(Slo.entity_id == entity.id, Slo.name == data.name, Slo.id != slo.id)
    )
    if clash:
        raise Conflict(f"{entity.ref} already has an SLO named {data.name!r}")
    before = snapshot(slo, old_entity.ref)
    for key, value in values.items():
        setattr(slo, key, value)
    slo.entity_id = entity.id
    slo.content_hash = new_hash
    if origin is not None:
        slo.origin = origin
    if slo.source == "events" and slo.ingest_key_hash is None:
        _new_key(slo)  # a source changed to events needs a key; rotate it to read it
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="slo.update",
        object_type=OBJECT_TYPE,
        object_id=slo.id,
        before=before,
        after=snapshot(slo, entity.ref),
    )
    events.emit(
        session=session,
        type="slo.updated",
        subject=f"slo:{slo.id}",
        payload=SloUpdated(id=slo.id, slo=slo.name, entity=entity.ref),
    )
    return slo, True


def delete(*, session: Session, actor: Actor, slo_id: int) -> None:
    slo = get(session=session, slo_id=slo_id)
    entity = entity_of(session, slo)
    require_owned_write(actor, entity.owner_team_id, f"the SLOs of {entity.ref}")
    before = snapshot(slo, entity.ref)
    name = slo.name
    session.delete(slo)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="slo.delete",
        object_type=OBJECT_TYPE,
        object_id=slo_id,
        before=before,
    )
    events.emit(
        session=session,
        type="slo.deleted",
        subject=f"slo:{slo_id}",
        payload=SloDeleted(id=slo_id, slo=name, entity=entity.ref),
    )


def rotate_ingest_key(*, session: Session, actor: Actor, slo_id: int) -> str:
    """A new ingest key for the SLO's built-in events; the old one stops working at once."""
    slo = get(session=session, slo_id=slo_id)
    entity = entity_of(session, slo)
    require_owned_write(actor, entity.owner_team_id, f"the SLOs of {entity.ref}")
    if slo.source != "events":
        raise ValidationFailed.one("source", "only SLOs on built-in events have an ingest key")
    key = _new_key(slo)
    audit.record(
        session=session,
        actor=actor,
        action="slo.rotate_ingest_key",
        object_type=OBJECT_TYPE,
        object_id=slo.id,
        after={"ingest_key": "…" + key[-4:]},
    )
    return key


# -- built-in events ---------------------------------------------------------------------------


def check_ingest_key(*, session: Session, slo_id: int, key: str) -> Slo:
    """The SLO whose ingest key this is; the same answer for a wrong key and an unknown SLO."""
    slo = session.get(Slo, slo_id)
    if slo is None or slo.ingest_key_hash is None or not _same(slo.ingest_key_hash, key):
        raise Unauthorized("not a valid ingest key for this SLO")
    return slo


def _same(stored: str, key: str) -> bool:
    import hmac

    return hmac.compare_digest(stored, crypto.digest(key))


def require_ingest_writer(*, session: Session, actor: Actor, slo: Slo) -> None:
    entity = entity_of(session, slo)
    require_owned_write(actor, entity.owner_team_id, f"the events of {entity.ref}'s SLOs")


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add the rows' counts to their buckets: one INSERT … ON CONFLICT DO UPDATE for all,
    on the table rather than the ORM class (no unit-of-work bookkeeping for counters)."""
    if not rows:
        return
    table = cast(sa.Table, SloCount.__table__)
    insert: Any = (
        postgresql.insert(table)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(table)
    )
    statement = insert.on_conflict_do_update(
        index_elements=["slo_id", "resolution", "at"],
        set_={
            "good": table.c.good + insert.excluded.good,
            "total": table.c.total + insert.excluded.total,
        },
    )
    session.connection().execute(statement, rows)


def record_counts(
    *,
    session: Session,
    slo_id: int,
    points: Iterable[tuple[dt.datetime, int, int]],
    now: dt.datetime | None = None,
    field: str = "body.points",
) -> tuple[int, int]:
    """Add good and total events to the SLO's minute, hour and day buckets (added to what the
    buckets hold: pushing a minute twice counts it twice, as a counter would). Returns the
    points taken and the buckets written. A point too old or in the future refuses the batch.
    """
    now = now or utcnow()
    oldest, newest = (now - MAX_AGE).timestamp(), (now + MAX_AHEAD).timestamp()
    # Bucketed on epoch seconds; one datetime is made per bucket, not per point.
    buckets: dict[tuple[int, int], list[int]] = {}
    accepted = 0
    for index, (at, good, total) in enumerate(points):
        epoch = at.timestamp()
        if not oldest <= epoch <= newest:
            raise ValidationFailed.one(
                f"{field}[{index}].at",
                f"{at.isoformat()} is outside what an SLO keeps (the last {MAX_AGE.days} days, "
                "and not in the future)",
            )
        if not 0 <= good <= total:
            raise ValidationFailed.one(f"{field}[{index}]", "need 0 <= good <= total")
        second = int(epoch // 1)
        for resolution in (MINUTE, HOUR, DAY):
            key = (resolution, second - second % resolution)
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = [good, total]
            else:
                bucket[0] += good
                bucket[1] += total
        accepted += 1
    rows = [
        {
            "slo_id": slo_id,
            "resolution": resolution,
            "at": dt.datetime.fromtimestamp(start, dt.UTC),
            "good": good,
            "total": total,
        }
        for (resolution, start), (good, total) in sorted(buckets.items())
    ]
    _upsert(session, rows)
    return accepted, len(rows)


def ingest(
    *,
    session: Session,
    slo: Slo,
    points: Sequence[tuple[dt.datetime | None, int, int]],
    now: dt.datetime | None = None,
) -> tuple[int, int]:
    """Take built-in events for an SLO whose source is ``events``."""
    if slo.source != "events":
        raise ValidationFailed.one(
            "source", f"this SLO measures {slo.source}; only SLOs on built-in events take events"
        )
    now = now or utcnow()
    return record_counts(
        session=session,
        slo_id=slo.id,
        points=[(at or now, good, total) for at, good, total in points],
        now=now,
    )


# -- the error budget policy, for other domains ------------------------------------------------


@dataclass(frozen=True)
class ReleasePolicy:
    """Whether an entity's non-emergency releases are frozen by an exhausted error budget."""

    entity: str
    frozen: bool
    reasons: tuple[str, ...]
    exception: dict[str, Any] | None

    @property
    def may_release(self) -> bool:
        return not self.frozen or self.exception is not None


def release_policy(
    *, session: Session, entity_ref: str, now: dt.datetime | None = None
) -> ReleasePolicy:
    """Read by release gates: frozen while an SLO of the entity with the freeze policy has
    spent its budget, unless an exception (with its reason) is in force."""
    entity = catalog.get_by_ref(session=session, ref=entity_ref, field="entity")
    return _release_policy(session, entity, now or utcnow())


def _release_policy(session: Session, entity: Entity, now: dt.datetime) -> ReleasePolicy:
    frozen = [slo for slo in of_entity(session=session, entity_id=entity.id) if slo.frozen]
    reasons = tuple(
        f"SLO {slo.name} has spent its error budget ({percent(slo.budget_remaining):.1f} % left)"
        for slo in frozen
    )
    exception = None
    if frozen:
        row = session.scalar(
            sa.select(FreezeException)
            .where(FreezeException.entity_id == entity.id, FreezeException.expires_at > now)
            .order_by(FreezeException.expires_at.desc())
            .limit(1)
        )
        if row is not None:
            by = session.get(User, row.created_by_user_id) if row.created_by_user_id else None
            exception = {
                "reason": row.reason,
                "by": by.email if by else None,
                "created_at": row.created_at.isoformat(),
                "expires_at": row.expires_at.isoformat(),
            }
    return ReleasePolicy(entity.ref, bool(frozen), reasons, exception)


def grant_exception(
    *, session: Session, actor: Actor, entity_ref: str, reason: str, hours: int = 24
) -> FreezeException:
    """Allow releases of a frozen entity for a while, with a reason; audited and announced.
    The owning team's members, SREs and admins may grant one."""
    entity = catalog.get_by_ref(session=session, ref=entity_ref, field="body.entity")
    require_owned_write(actor, entity.owner_team_id, f"the releases of {entity.ref}")
    if not reason.strip() or len(reason.strip()) < 10:
        raise ValidationFailed.one("body.reason", "say why, in at least 10 characters")
    now = utcnow()
    if not _release_policy(session, entity, now).frozen:
        raise Conflict(f"{entity.ref}'s releases are not frozen")
    row = FreezeException(
        entity_id=entity.id,
        reason=reason.strip(),
        created_by_user_id=actor.user_id,
        created_at=now,
        expires_at=now + dt.timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="slo.freeze_exception",
        object_type="catalog_entity",
        object_id=entity.ref,
        after={"reason": row.reason, "expires_at": row.expires_at.isoformat()},
    )
    events.emit(
        session=session,
        type="slo.freeze_exception_granted",
        subject=f"entity:{entity.ref}",
        payload=FreezeExceptionGranted(
            entity=entity.ref,
            reason=row.reason,
            expires_at=row.expires_at.isoformat(),
            by=actor.label,
        ),
    )
    return row
