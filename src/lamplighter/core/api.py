"""Core REST routes: users, teams, tokens, audit, events, webhooks and jobs."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from lamplighter.core import audit, events, identity, jobs, webhooks
from lamplighter.core.authz import PRIVILEGED, require_role
from lamplighter.core.deps import (
    MAX_BIG_ID,
    SESSION_COOKIE,
    BigId,
    BoxDep,
    CurrentActor,
    Id,
    PageDep,
    SessionDep,
)
from lamplighter.core.models import Team
from lamplighter.core.pagination import page_of
from lamplighter.core.schemas import (
    AuditRead,
    AuditVerifyRead,
    DeliveryRead,
    EventPage,
    EventRead,
    EventTypeRead,
    JobRead,
    MemberAdd,
    MeRead,
    Page,
    TeamCreate,
    TeamDetail,
    TeamRead,
    TeamUpdate,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserBrief,
    UserCreate,
    UserRead,
    UserUpdate,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from lamplighter.core.settings import Settings

router = APIRouter()


# -- users -----------------------------------------------------------------------------------
@router.get("/me", response_model=MeRead, tags=["identity"])
def read_me(session: SessionDep, actor: CurrentActor) -> MeRead:
    """The signed-in user, with the slugs of their teams."""
    assert actor.user_id is not None
    user = identity.get_user(session=session, user_id=actor.user_id)
    teams = identity.list_teams(session=session, after_id=None, limit=500, user_id=user.id)
    return MeRead.model_validate(
        {**UserRead.model_validate(user).model_dump(), "teams": [t.slug for t in teams]}
    )


@router.get("/users", response_model=Page[UserRead], tags=["identity"])
def list_users(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[UserRead]:
    rows = identity.list_users(
        session=session, after_id=page.position, limit=page.limit + 1, query=q
    )
    items, cursor = page_of(rows, page.limit, lambda u: u.id)
    return Page[UserRead](items=[UserRead.model_validate(u) for u in items], next_cursor=cursor)


@router.post(
    "/users", response_model=UserRead, status_code=status.HTTP_201_CREATED, tags=["identity"]
)
def create_user(body: UserCreate, session: SessionDep, actor: CurrentActor) -> UserRead:
    """Create a user (admins only)."""
    user = identity.create_user(session=session, actor=actor, **body.model_dump())
    session.commit()
    return UserRead.model_validate(user)


@router.get("/users/{user_id:int}", response_model=UserRead, tags=["identity"])
async def read_user(user_id: Id, session: SessionDep, actor: CurrentActor) -> UserRead:
    return UserRead.model_validate(identity.get_user(session=session, user_id=user_id))


@router.patch("/users/{user_id:int}", response_model=UserRead, tags=["identity"])
def update_user(
    user_id: Id, body: UserUpdate, request: Request, session: SessionDep, actor: CurrentActor
) -> UserRead:
    """Change a user: themself for profile fields, admins for role and activation. A new
    password needs ``current_password`` when it is your own, and ends the user's other web
    sessions."""
    user = identity.update_user(
        session=session,
        actor=actor,
        user_id=user_id,
        keep_session=request.cookies.get(SESSION_COOKIE),
        **body.model_dump(exclude_unset=True),
    )
    session.commit()
    return UserRead.model_validate(user)


@router.patch("/me", response_model=MeRead, tags=["identity"])
def update_me(
    body: UserUpdate, request: Request, session: SessionDep, actor: CurrentActor
) -> MeRead:
    """Change yourself: as ``PATCH /users/{your id}``."""
    assert actor.user_id is not None
    identity.update_user(
        session=session,
        actor=actor,
        user_id=actor.user_id,
        keep_session=request.cookies.get(SESSION_COOKIE),
        **body.model_dump(exclude_unset=True),
    )
    session.commit()
    return read_me(session, actor)


# -- teams -----------------------------------------------------------------------------------
def _team_read(team: Team) -> TeamRead:
    return TeamRead.model_validate(team)


@router.get("/teams", response_model=Page[TeamRead], tags=["identity"])
def list_teams(session: SessionDep, actor: CurrentActor, page: PageDep) -> Page[TeamRead]:
    rows = identity.list_teams(session=session, after_id=page.position, limit=page.limit + 1)
    items, cursor = page_of(rows, page.limit, lambda t: t.id)
    return Page[TeamRead](items=[_team_read(t) for t in items], next_cursor=cursor)


@router.post(
    "/teams", response_model=TeamDetail, status_code=status.HTTP_201_CREATED, tags=["identity"]
)
def create_team(body: TeamCreate, session: SessionDep, actor: CurrentActor) -> TeamDetail:
    """Create a team with its lead, the accountable person (SREs and admins)."""
    team = identity.create_team(session=session, actor=actor, **body.model_dump())
    session.commit()
    return _team_detail(session, team)


def _team_detail(session: SessionDep, team: Team) -> TeamDetail:
    members = identity.list_members(session=session, team_id=team.id)
    ancestors = identity.ancestors_of(session=session, team_id=team.id)
    children = identity.children_of(session=session, team_id=team.id)
    return TeamDetail(
        **_team_read(team).model_dump(),
        parent=ancestors[0].slug if ancestors else None,
        children=[child.slug for child in children],
        members=[UserBrief.model_validate(m.user) for m in members],
    )


@router.get("/teams/{slug}", response_model=TeamDetail, tags=["identity"])
async def read_team(slug: str, session: SessionDep, actor: CurrentActor) -> TeamDetail:
    return _team_detail(session, identity.get_team(session=session, slug=slug))


@router.patch("/teams/{slug}", response_model=TeamDetail, tags=["identity"])
def update_team(
    slug: str, body: TeamUpdate, session: SessionDep, actor: CurrentActor
) -> TeamDetail:
    changes = body.model_dump(exclude_unset=True)
    if "parent" in changes and changes["parent"] is None:
        changes["parent"] = ""  # null: no parent, which the service spells ""
    team = identity.update_team(session=session, actor=actor, slug=slug, **changes)
    session.commit()
    return _team_detail(session, team)


@router.post(
    "/teams/{slug}/members",
    response_model=TeamDetail,
    status_code=status.HTTP_201_CREATED,
    tags=["identity"],
)
def add_member(slug: str, body: MemberAdd, session: SessionDep, actor: CurrentActor) -> TeamDetail:
    identity.add_member(session=session, actor=actor, slug=slug, email=body.email)
    session.commit()
    return _team_detail(session, identity.get_team(session=session, slug=slug))


@router.delete(
    "/teams/{slug}/members/{user_id:int}", status_code=status.HTTP_204_NO_CONTENT, tags=["identity"]
)
def remove_member(slug: str, user_id: Id, session: SessionDep, actor: CurrentActor) -> Response:
    identity.remove_member(session=session, actor=actor, slug=slug, user_id=user_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- tokens ----------------------------------------------------------------------------------
@router.get("/tokens", response_model=Page[TokenRead], tags=["identity"])
def list_tokens(session: SessionDep, actor: CurrentActor, page: PageDep) -> Page[TokenRead]:
    """Your API tokens, newest first (never their secrets)."""
    assert actor.user_id is not None
    rows = identity.list_tokens(
        session=session, user_id=actor.user_id, before_id=page.position, limit=page.limit + 1
    )
    items, cursor = page_of(rows, page.limit, lambda t: t.id)
    return Page[TokenRead](items=[TokenRead.model_validate(t) for t in items], next_cursor=cursor)


@router.post(
    "/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED, tags=["identity"]
)
def create_token(body: TokenCreate, session: SessionDep, actor: CurrentActor) -> TokenCreated:
    """Create an API token. The response is the only time its secret is shown."""
    user_id = body.user_id if body.user_id is not None else actor.user_id
    assert user_id is not None
    token, plaintext = identity.create_token(
        session=session, actor=actor, user_id=user_id, name=body.name, expires_at=body.expires_at
    )
    session.commit()
    return TokenCreated(**TokenRead.model_validate(token).model_dump(), token=plaintext)


@router.delete("/tokens/{token_id:int}", response_model=TokenRead, tags=["identity"])
def revoke_token(token_id: Id, session: SessionDep, actor: CurrentActor) -> TokenRead:
    token = identity.revoke_token(session=session, actor=actor, token_id=token_id)
    session.commit()
    return TokenRead.model_validate(token)


# -- audit and events --------------------------------------------------------------------------
@router.get("/audit", response_model=Page[AuditRead], tags=["audit"])
def list_audit(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    actor_id: Annotated[str | None, Query(max_length=64, description="user:ID or token:ID")] = None,
    object_type: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[dt.datetime | None, Query(description="RFC 3339, inclusive")] = None,
    until: Annotated[dt.datetime | None, Query(description="RFC 3339, exclusive")] = None,
) -> Page[AuditRead]:
    """The audit log, newest first."""
    rows = list(
        audit.iter_filtered(
            session=session,
            actor_id=actor_id,
            object_type=object_type,
            object_id=object_id,
            action=action,
            since=_aware(since),
            until=_aware(until),
            before_id=page.position,
            limit=page.limit + 1,
        )
    )
    items, cursor = page_of(rows, page.limit, lambda e: e.id)
    return Page[AuditRead](items=[AuditRead.model_validate(e) for e in items], next_cursor=cursor)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


@router.get("/audit/verify", response_model=AuditVerifyRead, tags=["audit"])
def verify_audit(session: SessionDep, actor: CurrentActor) -> AuditVerifyRead:
    """Walk the hash chain and report the first broken link (SREs and admins)."""
    require_role(actor, *PRIVILEGED, action="verifying the audit chain")
    result = audit.verify(session=session)
    return AuditVerifyRead(
        ok=result.ok,
        checked=result.checked,
        head_hash=result.head_hash,
        broken_id=result.broken_id,
        reason=result.reason,
        bad=result.bad,
    )


@router.get("/events", response_model=EventPage, tags=["events"])
def list_events(
    session: SessionDep,
    actor: CurrentActor,
    after: Annotated[
        int, Query(ge=0, le=MAX_BIG_ID, description="Return events with a greater id.")
    ] = 0,
    type: Annotated[list[str] | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    """Domain events in commit order; poll with ?after=<last_id> to consume them."""
    rows = events.list_after(session=session, after=after, types=type, limit=limit)
    return EventPage(
        items=[EventRead.model_validate(e) for e in rows], last_id=rows[-1].id if rows else after
    )


@router.get("/events/types", response_model=list[EventTypeRead], tags=["events"])
def list_event_types(actor: CurrentActor) -> list[EventTypeRead]:
    """Every event type Lamplighter emits, with the JSON Schema of its payload and the in-app
    subscribers that react to it. Webhook patterns and ``?type=`` filters use these names."""
    return [EventTypeRead(**entry) for entry in events.catalogue()]


# -- webhooks --------------------------------------------------------------------------------
@router.get("/webhooks", response_model=Page[WebhookRead], tags=["webhooks"])
def list_webhooks(session: SessionDep, actor: CurrentActor, page: PageDep) -> Page[WebhookRead]:
    rows = webhooks.list_(session=session, after_id=page.position, limit=page.limit + 1)
    items, cursor = page_of(rows, page.limit, lambda w: w.id)
    return Page[WebhookRead](
        items=[WebhookRead.model_validate(w) for w in items], next_cursor=cursor
    )


@router.post(
    "/webhooks",
    response_model=WebhookCreated,
    status_code=status.HTTP_201_CREATED,
    tags=["webhooks"],
)
def create_webhook(
    body: WebhookCreate, session: SessionDep, actor: CurrentActor, box: BoxDep
) -> WebhookCreated:
    """Subscribe a URL to event types. Deliveries carry X-Lamplighter-Signature-256: sha256=HMAC(body)."""
    sub, secret = webhooks.create(session=session, actor=actor, box=box, **body.model_dump())
    session.commit()
    return WebhookCreated(**WebhookRead.model_validate(sub).model_dump(), secret=secret)


@router.get("/webhooks/{subscription_id:int}", response_model=WebhookRead, tags=["webhooks"])
def read_webhook(subscription_id: Id, session: SessionDep, actor: CurrentActor) -> WebhookRead:
    return WebhookRead.model_validate(
        webhooks.get(session=session, subscription_id=subscription_id)
    )


@router.patch("/webhooks/{subscription_id:int}", response_model=WebhookRead, tags=["webhooks"])
def update_webhook(
    subscription_id: Id, body: WebhookUpdate, session: SessionDep, actor: CurrentActor
) -> WebhookRead:
    sub = webhooks.update(
        session=session,
        actor=actor,
        subscription_id=subscription_id,
        **body.model_dump(exclude_unset=True),
    )
    session.commit()
    return WebhookRead.model_validate(sub)


@router.delete(
    "/webhooks/{subscription_id:int}", status_code=status.HTTP_204_NO_CONTENT, tags=["webhooks"]
)
def delete_webhook(subscription_id: Id, session: SessionDep, actor: CurrentActor) -> Response:
    webhooks.delete(session=session, actor=actor, subscription_id=subscription_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/webhooks/{subscription_id:int}/deliveries",
    response_model=Page[DeliveryRead],
    tags=["webhooks"],
)
def list_deliveries(
    subscription_id: Id, session: SessionDep, actor: CurrentActor, page: PageDep
) -> Page[DeliveryRead]:
    webhooks.get(session=session, subscription_id=subscription_id)
    rows = webhooks.list_deliveries(
        session=session,
        subscription_id=subscription_id,
        before_id=page.position,
        limit=page.limit + 1,
    )
    items, cursor = page_of(rows, page.limit, lambda d: d.id)
    return Page[DeliveryRead](
        items=[DeliveryRead.model_validate(d) for d in items], next_cursor=cursor
    )


# -- jobs ------------------------------------------------------------------------------------
@router.get("/jobs", response_model=Page[JobRead], tags=["jobs"])
def list_jobs(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    status_: Annotated[
        str | None, Query(alias="status", pattern="^(queued|running|done|dead|cancelled)$")
    ] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[JobRead]:
    """Jobs, newest first; ?status=dead lists the ones that ran out of tries (SREs and admins)."""
    require_role(actor, *PRIVILEGED, action="reading the job queue")
    rows = jobs.list_jobs(
        session=session, status=status_, kind=kind, before_id=page.position, limit=page.limit + 1
    )
    items, cursor = page_of(rows, page.limit, lambda j: j.id)
    return Page[JobRead](items=[JobRead.model_validate(j) for j in items], next_cursor=cursor)


@router.post("/jobs/{job_id:int}/retry", response_model=JobRead, tags=["jobs"])
def retry_job(job_id: BigId, session: SessionDep, actor: CurrentActor) -> JobRead:
    """Give a dead job a fresh set of tries (SREs and admins)."""
    job = jobs.retry_dead(session=session, actor=actor, job_id=job_id)
    session.commit()
    return JobRead.model_validate(job)


__all__ = ["Settings", "router"]
