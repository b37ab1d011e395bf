"""Integrations: where alerts come in, owned by a team or a catalog entity's team.

Each has a secret key (32 hex characters, the length of a PagerDuty routing key) stored as its
SHA-256 digest and shown once, at creation and at rotation. The ingest path looks keys up in a
per-process cache (:func:`by_key`) that lives ``auth_cache_seconds``: a rotated or deleted key
stops working at once in the process that rotated it, and within that time in the others.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.alerting import generic, matchers
from lamplighter.alerting.event_types import IntegrationDeleted
from lamplighter.alerting.models import (
    Alert,
    AlertGroup,
    AlertGroupLog,
    Integration,
    IntegrationKind,
)
from lamplighter.alerting.schemas import IntegrationIn, IntegrationPatch, IntegrationRead
from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity
from lamplighter.core import audit, events, people
from lamplighter.core.authz import require_owned_write, require_writer
from lamplighter.core.context import Actor
from lamplighter.core.crypto import digest
from lamplighter.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from lamplighter.core.settings import Settings

OBJECT_TYPE = "alert_integration"
MAX_PER_TEAM = 200
INGEST_PATHS = {
    IntegrationKind.ALERTMANAGER.value: "/api/v1/alerting/ingest/alertmanager/{key}",
    IntegrationKind.PAGERDUTY.value: "/v2/enqueue",
    IntegrationKind.GENERIC.value: "/api/v1/alerting/ingest/generic/{key}",
    IntegrationKind.HEARTBEAT.value: "/api/v1/alerting/heartbeat/{key}",
    IntegrationKind.SLO.value: "",
}
DEFAULT_GROUP_BY = {IntegrationKind.ALERTMANAGER.value: ["@group_key"]}
# Table and columns of the on-call domain's escalation policies, read only to check that a
# route names one that exists (alerting sits below on-call and does not import it).
_POLICIES = sa.table("escalation_policies", sa.column("id"), sa.column("team_id"))


@dataclass(frozen=True)
class Route:
    matchers: tuple[matchers.Matcher, ...]
    policy_id: int


@dataclass(frozen=True)
class Snapshot:
    """What the ingest path needs of an integration, cached per process."""

    id: int
    kind: str
    team_id: int
    entity_id: int | None
    entity_ref: str | None
    group_by: tuple[str, ...]
    group_window_s: int
    routes: tuple[Route, ...]
    policy_id: int | None
    severity_map: dict[str, str]
    mapping: generic.Mapping | None
    is_active: bool
    key_hash: str


_CACHE: dict[str, tuple[float, Snapshot | None]] = {}
_CACHE_MAX = 10_000


def new_key() -> str:
    return secrets.token_hex(16)


def snapshot_of(integration: Integration, entity_ref: str | None) -> Snapshot:
    routes = tuple(
        Route(
            matchers=tuple(matchers.parse_all(route.get("matchers", []), "routes")[0]),
            policy_id=int(route["policy_id"]),
        )
        for route in integration.routes or []
    )
    return Snapshot(
        id=integration.id,
        kind=integration.kind,
        team_id=integration.team_id,
        entity_id=integration.entity_id,
        entity_ref=entity_ref,
        group_by=tuple(integration.group_by or ()),
        group_window_s=integration.group_window_s,
        routes=routes,
        policy_id=integration.policy_id,
        severity_map=dict(integration.severity_map or {}),
        mapping=generic.parse_mapping(integration.mapping) if integration.mapping else None,
        is_active=integration.is_active,
        key_hash=integration.key_hash,
    )


MISS = object()


def cached(key: str, *, ttl_s: float) -> Snapshot | object | None:
    """The cached answer for a key, or ``MISS`` when the database must be asked."""
    found = _CACHE.get(digest(key))
    if found is not None and time.monotonic() - found[0] < ttl_s:
        return found[1]
    return MISS


def by_key(session: Session, key: str, *, ttl_s: float) -> Snapshot | None:
    """The active integration a key opens, or None; cached ``ttl_s`` per process."""
    hashed = digest(key)
    now = time.monotonic()
    cached = _CACHE.get(hashed)
    if cached is not None and now - cached[0] < ttl_s:
        return cached[1]
    integration = session.scalar(sa.select(Integration).where(Integration.key_hash == hashed))
    found = None
    if integration is not None and integration.is_active:
        found = snapshot_of(integration, _entity_ref(session, integration.entity_id))
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[hashed] = (now, found)
    return found


def forget(key_hash: str) -> None:
    _CACHE.pop(key_hash, None)


def _entity_ref(session: Session, entity_id: int | None) -> str | None:
    if entity_id is None:
        return None
    entity = session.get(Entity, entity_id)
    return entity.ref if entity is not None else None


def ingest_url(settings: Settings, kind: str, key: str | None) -> str:
    path = INGEST_PATHS.get(kind, "")
    if not path:
        return ""
    return settings.base_url.rstrip("/") + path.replace("{key}", key or "<key>")


def read(session: Session, integration: Integration, settings: Settings) -> IntegrationRead:
    team = people.find_team(session=session, team_id=integration.team_id)
    return IntegrationRead(
        id=integration.id,
        name=integration.name,
        kind=integration.kind,
        team=team.slug if team else "",
        entity=_entity_ref(session, integration.entity_id),
        key_hint="…" + integration.key_last4,
        ingest_url=ingest_url(settings, integration.kind, None),
        group_by=list(integration.group_by or []),
        group_window_s=integration.group_window_s,
        routes=list(integration.routes or []),
        policy_id=integration.policy_id,
        severity_map=dict(integration.severity_map or {}),
        mapping=integration.mapping,
        heartbeat_interval_s=integration.heartbeat_interval_s,
        heartbeat_grace_s=integration.heartbeat_grace_s,
        last_ping_at=integration.last_ping_at,
        is_active=integration.is_active,
        created_at=integration.created_at,
    )


def snapshot(integration: Integration) -> dict[str, Any]:
    """What the audit trail keeps of an integration: never the key, only its last four."""
    return {
        "name": integration.name,
        "kind": integration.kind,
        "team_id": integration.team_id,
        "entity_id": integration.entity_id,
        "key_last4": integration.key_last4,
        "group_by": list(integration.group_by or []),
        "group_window_s": integration.group_window_s,
        "routes": list(integration.routes or []),
        "policy_id": integration.policy_id,
        "severity_map": dict(integration.severity_map or {}),
        "mapping": integration.mapping,
        "heartbeat_interval_s": integration.heartbeat_interval_s,
        "heartbeat_grace_s": integration.heartbeat_grace_s,
        "is_active": integration.is_active,
    }


def get(session: Session, integration_id: int) -> Integration:
    integration = session.get(Integration, integration_id)
    if integration is None or integration.kind == IntegrationKind.SLO.value:
        raise NotFound(f"no integration {integration_id}")
    return integration


def list_(
    session: Session, *, team_id: int | None = None, after: int | None = None, limit: int = 50
) -> list[Integration]:
    query = (
        sa.select(Integration)
        .where(Integration.kind != IntegrationKind.SLO.value)
        .order_by(Integration.id)
        .limit(limit)
    )
    if team_id is not None:
        query = query.where(Integration.team_id == team_id)
    if after is not None:
        query = query.where(Integration.id > after)
    return list(session.scalars(query))


def _owner(session: Session, data: IntegrationIn) -> tuple[int, int | None]:
    if data.entity:
        entity = catalog.get_by_ref(session=session, ref=data.entity, field="body.entity")
        if entity.owner_team_id is None:
            raise ValidationFailed.one("body.entity", f"{entity.ref} has no owning team")
        if data.team:
            team = people.find_team_by_slug(session=session, slug=data.team)
            if team is None or team.id != entity.owner_team_id:
                raise ValidationFailed.one(
                    "body.team", f"{entity.ref} is owned by another team; leave team out"
                )
        return entity.owner_team_id, entity.id
    if not data.team:
        raise ValidationFailed.one("body.team", "name the owning team or the entity")
    team = people.find_team_by_slug(session=session, slug=data.team)
    if team is None:
        raise ValidationFailed.one("body.team", f"no team {data.team!r}")
    return team.id, None


def _check_config(
    session: Session,
    *,
    kind: str,
    team_id: int,
    group_by: list[str],
    routes: list[dict[str, Any]],
    policy_id: int | None,
    mapping: dict[str, Any] | None,
    heartbeat_interval_s: int | None,
) -> None:
    problems: list[tuple[str, str]] = []
    for index, name in enumerate(group_by):
        if not isinstance(name, str) or not name or len(name) > 100:
            problems.append((f"body.group_by[{index}]", "a label name of 1 to 100 characters"))
    policy_ids = {route["policy_id"] for route in routes} | ({policy_id} if policy_id else set())
    for index, route in enumerate(routes):
        _, found = matchers.parse_all(route.get("matchers", []), f"body.routes[{index}].matchers")
        problems.extend(found)
    if policy_ids:
        known = set(
            session.scalars(sa.select(_POLICIES.c.id).where(_POLICIES.c.id.in_(policy_ids)))
        )
        for index, route in enumerate(routes):
            if route["policy_id"] not in known:
                problems.append(
                    (
                        f"body.routes[{index}].policy_id",
                        f"no escalation policy {route['policy_id']}",
                    )
                )
        if policy_id and policy_id not in known:
            problems.append(("body.policy_id", f"no escalation policy {policy_id}"))
    if kind == IntegrationKind.GENERIC.value:
        if mapping is None:
            problems.append(
                ("body.mapping", "a generic webhook needs a mapping (summary at least)")
            )
        else:
            problems.extend(
                (f"body.mapping{e.field[len('mapping'):]}" if e.field.startswith("mapping")
                 else f"body.mapping.{e.field}", e.reason)
                for e in generic.check_mapping(mapping)
            )  # fmt: skip
    elif mapping is not None:
        problems.append(("body.mapping", "only generic webhooks take a mapping"))
    if kind == IntegrationKind.HEARTBEAT.value and heartbeat_interval_s is None:
        problems.append(("body.heartbeat_interval_s", "a heartbeat needs its interval"))
    if problems:
        raise ValidationFailed(
            f"{problems[0][0]}: {problems[0][1]}",
            errors=[FieldError(path, reason) for path, reason in problems],
        )


def create(*, session: Session, actor: Actor, data: IntegrationIn) -> tuple[Integration, str]:
    """A new integration and its key (shown this once)."""
    require_writer(actor, "create integrations")
    team_id, entity_id = _owner(session, data)
    require_owned_write(actor, team_id, "the integrations of this team")
    group_by = data.group_by if data.group_by is not None else DEFAULT_GROUP_BY.get(data.kind, [])
    routes = [route.model_dump() for route in data.routes]
    _check_config(
        session,
        kind=data.kind,
        team_id=team_id,
        group_by=group_by,
        routes=routes,
        policy_id=data.policy_id,
        mapping=data.mapping,
        heartbeat_interval_s=data.heartbeat_interval_s,
    )
    count = session.scalar(
        sa.select(sa.func.count()).select_from(Integration).where(Integration.team_id == team_id)
    )
    if (count or 0) >= MAX_PER_TEAM:
        raise Conflict(f"a team has at most {MAX_PER_TEAM} integrations")
    if session.scalar(
        sa.select(Integration.id).where(
            Integration.team_id == team_id, Integration.name == data.name
        )
    ):
        raise Conflict(f"this team already has an integration named {data.name!r}")
    key = new_key()
    integration = Integration(
        name=data.name,
        kind=data.kind,
        team_id=team_id,
        entity_id=entity_id,
        key_hash=digest(key),
        key_last4=key[-4:],
        mapping=data.mapping,
        group_by=group_by,
        group_window_s=data.group_window_s,
        routes=routes,
        policy_id=data.policy_id,
        severity_map=dict(data.severity_map),
        heartbeat_interval_s=data.heartbeat_interval_s,
        heartbeat_grace_s=data.heartbeat_grace_s
        if data.heartbeat_grace_s is not None
        else (60 if data.kind == IntegrationKind.HEARTBEAT.value else None),
        created_by_user_id=actor.user_id,
    )
    session.add(integration)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="integration.create",
        object_type=OBJECT_TYPE,
        object_id=integration.id,
        after=snapshot(integration),
    )
    return integration, key


def update(
    *, session: Session, actor: Actor, integration_id: int, data: IntegrationPatch
) -> Integration:
    integration = get(session, integration_id)
    require_owned_write(actor, integration.team_id, "the integrations of this team")
    before = snapshot(integration)
    changes = data.model_dump(exclude_unset=True)
    if "routes" in changes:
        changes["routes"] = [dict(route) for route in changes["routes"] or []]
    merged = {**before, **changes}
    _check_config(
        session,
        kind=integration.kind,
        team_id=integration.team_id,
        group_by=merged["group_by"] or [],
        routes=merged["routes"] or [],
        policy_id=merged["policy_id"],
        mapping=merged["mapping"],
        heartbeat_interval_s=merged["heartbeat_interval_s"],
    )
    if (
        "name" in changes
        and changes["name"] != integration.name
        and session.scalar(
            sa.select(Integration.id).where(
                Integration.team_id == integration.team_id, Integration.name == changes["name"]
            )
        )
    ):
        raise Conflict(f"this team already has an integration named {changes['name']!r}")
    for name, value in changes.items():
        if name in ("group_by", "routes") and value is None:
            value = []
        if name == "severity_map" and value is None:
            value = {}
        setattr(integration, name, value)
    session.flush()
    forget(integration.key_hash)
    after = snapshot(integration)
    if after != before:
        audit.record(
            session=session,
            actor=actor,
            action="integration.update",
            object_type=OBJECT_TYPE,
            object_id=integration.id,
            before=before,
            after=after,
        )
    return integration


def rotate_key(*, session: Session, actor: Actor, integration_id: int) -> tuple[Integration, str]:
    """A new key, shown this once; the old one stops working at once."""
    integration = get(session, integration_id)
    require_owned_write(actor, integration.team_id, "the integrations of this team")
    before = snapshot(integration)
    forget(integration.key_hash)
    key = new_key()
    integration.key_hash = digest(key)
    integration.key_last4 = key[-4:]
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="integration.rotate_key",
        object_type=OBJECT_TYPE,
        object_id=integration.id,
        before=before,
        after=snapshot(integration),
    )
    return integration, key


def delete(*, session: Session, actor: Actor, integration_id: int) -> None:
    integration = get(session, integration_id)
    require_owned_write(actor, integration.team_id, "the integrations of this team")
    before = snapshot(integration)
    forget(integration.key_hash)
    # The alerts and the groups' timelines carry no foreign key to cascade by (migrations
    # 0013 and 0014); the groups do. Other domains hear of it (``alert.integration_deleted``).
    session.execute(
        sa.delete(Alert)
        .where(Alert.integration_id == integration.id)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.delete(AlertGroupLog)
        .where(
            AlertGroupLog.group_id.in_(
                sa.select(AlertGroup.id).where(AlertGroup.integration_id == integration.id)
            )
        )
        .execution_options(synchronize_session=False)
    )
    session.delete(integration)
    session.flush()
    events.emit(
        session=session,
        type="alert.integration_deleted",
        subject=f"alert-integration:{integration_id}",
        payload=IntegrationDeleted(
            id=integration_id, team_id=integration.team_id, name=integration.name
        ),
    )
    audit.record(
        session=session,
        actor=actor,
        action="integration.delete",
        object_type=OBJECT_TYPE,
        object_id=integration_id,
        before=before,
    )


def slo_integration(session: Session, *, entity_id: int, team_id: int) -> Integration:
    """The built-in integration the SLO domain's alerts of one entity come in through."""
    found = session.scalar(
        sa.select(Integration).where(
            Integration.kind == IntegrationKind.SLO.value, Integration.entity_id == entity_id
        )
    )
    if found is not None:
        if found.team_id != team_id:
            found.team_id = team_id
        return found
    key = new_key()  # never shown: SLO alerts come from the SLO domain's events, not a sender
    found = Integration(
        name=f"SLOs of entity {entity_id}",
        kind=IntegrationKind.SLO.value,
        team_id=team_id,
        entity_id=entity_id,
        key_hash=digest(key),
        key_last4=key[-4:],
        group_by=["slo"],
        group_window_s=86400,
    )
    session.add(found)
    session.flush()
    return found
