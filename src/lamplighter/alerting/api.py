"""Alerting REST routes: integrations, alert groups and their actions, silences, maintenance
windows and notes on alert kinds. The ingest endpoints are in ``ingest_api.py``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from lamplighter.alerting import groups, integrations, silences
from lamplighter.alerting.schemas import (
    AlertRead,
    GroupDetail,
    GroupRead,
    IntegrationCreated,
    IntegrationIn,
    IntegrationPatch,
    IntegrationRead,
    MaintenanceIn,
    NoteIn,
    NoteRead,
    ReassignIn,
    SilenceIn,
    SilenceRead,
)
from lamplighter.catalog import service as catalog
from lamplighter.core import identity
from lamplighter.core.deps import CurrentActor, Id, SessionDep, SettingsDep
from lamplighter.core.pagination import MAX_LIMIT, decode_cursor, page_of
from lamplighter.core.schemas import Page
from lamplighter.core.settings import Settings

router = APIRouter(prefix="/alerting", tags=["alerting"])

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size, at most 500.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="From the previous page's next_cursor.")
]
TeamQuery = Annotated[str | None, Query(max_length=63, description="Owning team's slug")]
EntityQuery = Annotated[
    str | None, Query(min_length=1, max_length=300, description="Catalog reference")
]


def _created(
    session: SessionDep, integration: object, key: str, settings: Settings
) -> IntegrationCreated:
    read = integrations.read(session, integration, settings)  # type: ignore[arg-type]
    return IntegrationCreated(
        **read.model_dump(),
        key=key,
        ingest_url_with_key=integrations.ingest_url(settings, read.kind, key),
    )


# -- integrations -----------------------------------------------------------------------------
@router.get("/integrations", response_model=Page[IntegrationRead])
def list_integrations(
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    team: TeamQuery = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[IntegrationRead]:
    team_id = identity.get_team(session=session, slug=team).id if team else None
    rows = integrations.list_(
        session, team_id=team_id, after=decode_cursor(cursor), limit=limit + 1
    )
    page, next_cursor = page_of(rows, limit, lambda row: row.id)
    return Page[IntegrationRead](
        items=[integrations.read(session, row, settings) for row in page], next_cursor=next_cursor
    )


@router.post(
    "/integrations", response_model=IntegrationCreated, status_code=status.HTTP_201_CREATED
)
def create_integration(
    body: IntegrationIn, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> IntegrationCreated:
    """A new integration. The answer carries its key and ingest URL, shown this once."""
    integration, key = integrations.create(session=session, actor=actor, data=body)
    answer = _created(session, integration, key, settings)
    session.commit()
    return answer


@router.get("/integrations/{integration_id}", response_model=IntegrationRead)
def get_integration(
    integration_id: Id, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> IntegrationRead:
    return integrations.read(session, integrations.get(session, integration_id), settings)


@router.patch("/integrations/{integration_id}", response_model=IntegrationRead)
def update_integration(
    integration_id: Id,
    body: IntegrationPatch,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
) -> IntegrationRead:
    integration = integrations.update(
        session=session, actor=actor, integration_id=integration_id, data=body
    )
    answer = integrations.read(session, integration, settings)
    session.commit()
    return answer


@router.post("/integrations/{integration_id}/rotate-key", response_model=IntegrationCreated)
def rotate_integration_key(
    integration_id: Id, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> IntegrationCreated:
    """A new key, shown this once; the old one stops working."""
    integration, key = integrations.rotate_key(
        session=session, actor=actor, integration_id=integration_id
    )
    answer = _created(session, integration, key, settings)
    session.commit()
    return answer


@router.delete("/integrations/{integration_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_integration(integration_id: Id, session: SessionDep, actor: CurrentActor) -> None:
    integrations.delete(session=session, actor=actor, integration_id=integration_id)
    session.commit()


# -- alert groups -----------------------------------------------------------------------------
@router.get("/groups", response_model=Page[GroupRead])
def list_groups(
    session: SessionDep,
    actor: CurrentActor,
    status_: Annotated[
        str | None,
        Query(alias="status", pattern="^(open|triggered|acknowledged|resolved)$"),
    ] = None,
    team: TeamQuery = None,
    entity: EntityQuery = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[GroupRead]:
    """Alert groups, newest first."""
    team_id = identity.get_team(session=session, slug=team).id if team else None
    entity_id = (
        catalog.get_by_ref(session=session, ref=entity, field="query.entity").id if entity else None
    )
    rows = groups.list_(
        session,
        status=status_,
        team_id=team_id,
        entity_id=entity_id,
        before=decode_cursor(cursor),
        limit=limit + 1,
    )
    page, next_cursor = page_of(rows, limit, lambda row: row.id)
    return Page[GroupRead](
        items=[groups.read(session, row) for row in page], next_cursor=next_cursor
    )


@router.get("/groups/{group_id}", response_model=GroupDetail)
def get_group(group_id: Id, session: SessionDep, actor: CurrentActor) -> GroupDetail:
    """The group with its alerts, timeline and the team's note on its alert kind."""
    return groups.detail(session, groups.get(session, group_id))


@router.get("/groups/{group_id}/alerts", response_model=Page[AlertRead])
def list_group_alerts(
    group_id: Id, session: SessionDep, actor: CurrentActor, limit: Limit = 50, cursor: Cursor = None
) -> Page[AlertRead]:
    rows = groups.alerts_of(
        session, group_id=group_id, after=decode_cursor(cursor), limit=limit + 1
    )
    page, next_cursor = page_of(rows, limit, lambda row: row.id)
    return Page[AlertRead](items=[groups.alert_read(a) for a in page], next_cursor=next_cursor)


@router.post("/groups/{group_id}/acknowledge", response_model=GroupRead)
def acknowledge_group(group_id: Id, session: SessionDep, actor: CurrentActor) -> GroupRead:
    """Acknowledge: its escalation stops."""
    group = groups.acknowledge(
        session=session,
        actor=actor,
        group_id=group_id,
        also_allowed=groups.responders(session, group_id),
    )
    answer = groups.read(session, group)
    session.commit()
    return answer


@router.post("/groups/{group_id}/resolve", response_model=GroupRead)
def resolve_group(group_id: Id, session: SessionDep, actor: CurrentActor) -> GroupRead:
    group = groups.resolve(
        session=session,
        actor=actor,
        group_id=group_id,
        also_allowed=groups.responders(session, group_id),
    )
    answer = groups.read(session, group)
    session.commit()
    return answer


@router.post("/groups/{group_id}/escalate", response_model=GroupRead)
def escalate_group(group_id: Id, session: SessionDep, actor: CurrentActor) -> GroupRead:
    """Escalate now: the next tier is notified at once."""
    group = groups.escalate(
        session=session,
        actor=actor,
        group_id=group_id,
        also_allowed=groups.responders(session, group_id),
    )
    answer = groups.read(session, group)
    session.commit()
    return answer


@router.post("/groups/{group_id}/reassign", response_model=GroupRead)
def reassign_group(
    group_id: Id, body: ReassignIn, session: SessionDep, actor: CurrentActor
) -> GroupRead:
    group = groups.reassign(
        session=session,
        actor=actor,
        group_id=group_id,
        to_email=body.user,
        also_allowed=groups.responders(session, group_id),
    )
    answer = groups.read(session, group)
    session.commit()
    return answer


@router.put("/groups/{group_id}/note", response_model=NoteRead)
def set_group_note(
    group_id: Id, body: NoteIn, session: SessionDep, actor: CurrentActor
) -> NoteRead:
    """The team's "how to handle this" note on the group's alert kind."""
    note = groups.set_note(session=session, actor=actor, group_id=group_id, body=body.body)
    session.commit()
    return note


# -- silences and maintenance windows ----------------------------------------------------------
@router.get("/silences", response_model=Page[SilenceRead])
def list_silences(
    session: SessionDep,
    actor: CurrentActor,
    active: Annotated[bool, Query(description="Only those in force now")] = False,
    kind: Annotated[str | None, Query(pattern="^(silence|maintenance)$")] = None,
    team: TeamQuery = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[SilenceRead]:
    team_id = identity.get_team(session=session, slug=team).id if team else None
    rows = silences.list_(
        session,
        active_only=active,
        kind=kind,
        team_id=team_id,
        before=decode_cursor(cursor),
        limit=limit + 1,
    )
    page, next_cursor = page_of(rows, limit, lambda row: row.id)
    return Page[SilenceRead](
        items=[silences.read(session, row) for row in page], next_cursor=next_cursor
    )


@router.post("/silences", response_model=SilenceRead, status_code=status.HTTP_201_CREATED)
def create_silence(body: SilenceIn, session: SessionDep, actor: CurrentActor) -> SilenceRead:
    silence = silences.create(session=session, actor=actor, data=body)
    answer = silences.read(session, silence)
    session.commit()
    return answer


@router.post("/maintenance", response_model=SilenceRead, status_code=status.HTTP_201_CREATED)
def create_maintenance(
    body: MaintenanceIn, session: SessionDep, actor: CurrentActor
) -> SilenceRead:
    """A maintenance window: the entity's alerts page nobody until it ends."""
    silence = silences.create_maintenance(session=session, actor=actor, data=body)
    answer = silences.read(session, silence)
    session.commit()
    return answer


@router.get("/silences/{silence_id}", response_model=SilenceRead)
def get_silence(silence_id: Id, session: SessionDep, actor: CurrentActor) -> SilenceRead:
    return silences.read(session, silences.get(session, silence_id))


@router.post("/silences/{silence_id}/expire", response_model=SilenceRead)
def expire_silence(silence_id: Id, session: SessionDep, actor: CurrentActor) -> SilenceRead:
    """End it now; it stays listed."""
    silence = silences.expire(session=session, actor=actor, silence_id=silence_id)
    answer = silences.read(session, silence)
    session.commit()
    return answer
