"""Self-service REST routes: actions, templates, runs and access grants.

Starting a run answers **201 Created** with the run (``Location: /api/v1/runs/<id>``): the run
exists from then on, queued or awaiting approval, and the job worker executes it afterwards;
poll ``GET /runs/{id}`` for each step's status and log. Service field errors are named from the
request (``body.parameters.name``, ``body.yaml.steps.0.action``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response, status
from sqlalchemy.orm import Session

from lamplighter.catalog import service as catalog
from lamplighter.catalog.api import KindPath, NamePath
from lamplighter.catalog.models import Entity
from lamplighter.core import audit, identity, people
from lamplighter.core.context import Actor
from lamplighter.core.deps import BoxDep, CurrentActor, Id, PageDep, SessionDep, SettingsDep
from lamplighter.core.errors import FieldError, NotFound, ValidationFailed
from lamplighter.core.pagination import encode_cursor, page_of
from lamplighter.core.schemas import Page
from lamplighter.selfservice import grants, runs, templates
from lamplighter.selfservice.actions import base as actions
from lamplighter.selfservice.models import Run, RunStatus, Template
from lamplighter.selfservice.schemas import (
    TEMPLATE_FIELDS,
    ActionRead,
    GrantCreate,
    GrantDecision,
    GrantRead,
    GrantRejection,
    RunDecision,
    RunDetail,
    RunRead,
    RunRejection,
    RunStart,
    SecretBrief,
    SecretsRevealed,
    StepRead,
    TemplateDetail,
    TemplateDraftRead,
    TemplateRead,
    TemplateRejection,
    TemplateReview,
    TemplateWrite,
)

router = APIRouter(tags=["self-service"])
TEMPLATE_BODY_LIMIT = 3 * templates.MAX_TEMPLATE_BYTES  # YAML text JSON-escaped may grow


@contextmanager
def fields_under(prefix: str) -> Iterator[None]:
    """Name a service's field errors from the request: ``parameters.x`` → ``body.parameters.x``."""
    try:
        yield
    except ValidationFailed as exc:
        named = [
            FieldError(
                error.field
                if error.field.startswith(("body", "query", "path"))
                else f"{prefix}.{error.field}",
                _short(error.reason),
            )
            for error in exc.errors
        ]
        if not named:
            raise
        more = f" (and {len(named) - 1} more)" if len(named) > 1 else ""
        raise ValidationFailed(f"{named[0].field}: {named[0].reason}{more}", errors=named) from None


def _short(reason: str, limit: int = 500) -> str:
    """A reason quoting a huge value (a schema error echoes it) is cut, not sent back whole."""
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def _required_reason(body: RunRejection | GrantRejection | None) -> str:
    """A rejection names its reason; a request without any body is told which field is missing."""
    if body is None:
        raise ValidationFailed.one("body.reason", "required field is missing")
    return body.reason


def _offset_page(rows: list[Any], page: Any) -> tuple[list[Any], str | None]:
    """Pages of a short list held in memory; the cursor is the offset of the next page."""
    start = page.position or 0
    chunk = rows[start : start + page.limit]
    return chunk, encode_cursor(start + page.limit) if len(rows) > start + page.limit else None


def _email(session: Session, user_id: int | None) -> str | None:
    user = people.find_user(session=session, user_id=user_id)
    return user.email if user is not None else None


def _slug(session: Session, team_id: int | None) -> str | None:
    team = people.find_team(session=session, team_id=team_id)
    return team.slug if team is not None else None


# -- actions -----------------------------------------------------------------------------------
@router.get("/actions", response_model=Page[ActionRead])
def list_actions(actor: CurrentActor, page: PageDep) -> Page[ActionRead]:
    """Every registered action with the JSON Schemas of its input and output, by name."""
    rows = [actions.ACTIONS[name].schema() for name in sorted(actions.ACTIONS)]
    items, cursor = _offset_page(rows, page)
    return Page[ActionRead](items=[ActionRead(**row) for row in items], next_cursor=cursor)


# -- templates ---------------------------------------------------------------------------------
def template_read(template: Template) -> TemplateRead:
    return TemplateRead(
        name=template.name,
        title=template.title,
        description=template.description,
        owner=str(template.spec.get("owner", "")),
        approval=template.approval,
        effective_approval=templates.effective_approval(
            template.spec or template.draft or {}
        ).value,
        allowed_teams=list(template.allowed_teams),
        request_type=template.request_type,
        source=template.source,
        source_path=templates.source_name(template),
        version=template.version,
        draft_pending=template.draft is not None,
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


def template_detail(session: Session, template: Template) -> TemplateDetail:
    """The published definition, and beside it the draft waiting for review (if any)."""
    spec = template.spec
    draft = None
    if template.draft is not None:
        draft = TemplateDraftRead(
            definition=template.draft,
            privileged_actions=templates.privileged_actions(template.draft),
            submitted_by=_email(session, template.draft_submitted_by),
            submitted_at=template.draft_submitted_at,
        )
    return TemplateDetail(
        **template_read(template).model_dump(),
        parameters=spec.get("parameters") or {"type": "object", "properties": {}},
        steps=list(spec.get("steps") or []),
        output=spec.get("output") or {"links": [], "entities": []},
        published_by=_email(session, template.published_by),
        published_at=template.published_at,
        draft=draft,
    )


def _definition(body: TemplateWrite) -> tuple[dict[str, Any], str]:
    """The definition sent, and the prefix its field errors are named under."""
    sent = body.model_dump(exclude_unset=True)
    if body.yaml is None:
        sent.pop("yaml", None)
        return sent, "body"
    others = sorted(set(sent) & set(TEMPLATE_FIELDS))
    if others:
        raise ValidationFailed.one(
            f"body.{others[0]}", "send the template either as yaml or as fields, not both"
        )
    return templates.parse_yaml(body.yaml, field="body.yaml"), "body.yaml"


@router.get("/templates", response_model=Page[TemplateRead])
def list_templates(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    owner: Annotated[str | None, Query(max_length=63, description="Owning team slug")] = None,
) -> Page[TemplateRead]:
    """Templates (golden paths) by name, optionally only one team's."""
    rows = templates.list_(session=session)
    if owner:
        team_id = identity.get_team(session=session, slug=owner).id
        rows = [t for t in rows if t.owner_team_id == team_id]
    items, cursor = _offset_page(rows, page)
    return Page[TemplateRead](items=[template_read(t) for t in items], next_cursor=cursor)


@router.post(
    "/templates",
    response_model=TemplateDetail,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"x-max-body-bytes": TEMPLATE_BODY_LIMIT},
)
def create_template(
    body: TemplateWrite, session: SessionDep, actor: CurrentActor
) -> TemplateDetail:
    """Register a template from its fields or from YAML text (``{"yaml": "..."}``)."""
    definition, prefix = _definition(body)
    with fields_under(prefix):
        template = templates.create(session=session, actor=actor, definition=definition)
    session.commit()
    return template_detail(session, template)


@router.get("/templates/{name}", response_model=TemplateDetail)
def read_template(name: str, session: SessionDep, actor: CurrentActor) -> TemplateDetail:
    """The published definition, with the JSON Schema of its parameters (for forms and
    prompts), and the draft waiting for the platform team's review beside it."""
    return template_detail(session, templates.get(session=session, name=name))


@router.put(
    "/templates/{name}",
    response_model=TemplateDetail,
    openapi_extra={"x-max-body-bytes": TEMPLATE_BODY_LIMIT},
)
def update_template(
    name: str, body: TemplateWrite, session: SessionDep, actor: CurrentActor
) -> TemplateDetail:
    """Replace the definition; the version goes up when anything changed. Runs keep theirs."""
    definition, prefix = _definition(body)
    definition.setdefault("name", name)
    with fields_under(prefix):
        template = templates.update(session=session, actor=actor, name=name, definition=definition)
    session.commit()
    return template_detail(session, template)


@router.post("/templates/{name}/draft/approve", response_model=TemplateDetail)
def approve_template_draft(
    name: str, session: SessionDep, actor: CurrentActor, body: TemplateReview | None = None
) -> TemplateDetail:
    """Publish the draft waiting for review (SREs and admins): it becomes the version that runs."""
    with fields_under("body.draft"):
        template = templates.approve_draft(
            session=session, actor=actor, name=name, reason=body.reason if body else ""
        )
    session.commit()
    return template_detail(session, template)


@router.post("/templates/{name}/draft/reject", response_model=TemplateDetail)
def reject_template_draft(
    name: str, session: SessionDep, actor: CurrentActor, body: TemplateRejection | None = None
) -> TemplateDetail:
    """Discard the draft waiting for review, with the reason its author reads (SREs, admins)."""
    if body is None:
        raise ValidationFailed.one("body.reason", "required field is missing")
    with fields_under("body"):
        template = templates.reject_draft(
            session=session, actor=actor, name=name, reason=body.reason
        )
    session.commit()
    return template_detail(session, template)


@router.delete("/templates/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_template(name: str, session: SessionDep, actor: CurrentActor) -> Response:
    """Remove a template that was never run (409 otherwise: its runs keep its history)."""
    templates.delete(session=session, actor=actor, name=name)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- runs --------------------------------------------------------------------------------------
def run_read(session: Session, run: Run) -> RunRead:
    return RunRead(
        id=run.id,
        template=str(run.spec.get("name", "")),
        template_title=str(run.spec.get("title", "")),
        template_version=run.template_version,
        status=run.status,
        dry_run=run.dry_run,
        parameters=audit.redact(run.parameters),
        requester=_email(session, run.requester_user_id),
        requesting_team=_slug(session, run.requesting_team_id),
        approver=_email(session, run.approver_user_id),
        decision_reason=run.decision_reason,
        decided_at=run.decided_at,
        error=run.error,
        failed_step=run.failed_step,
        ticket_id=run.ticket_id,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def run_detail(session: Session, run: Run) -> RunDetail:
    """The run with its steps, rendered outputs and the names (never values) of its secrets."""
    specs = run.spec.get("steps") or []
    steps = [
        StepRead(
            index=step.index,
            id=step.step_id,
            action=step.action,
            title=specs[step.index].get("title") if step.index < len(specs) else None,
            status=step.status,
            input=step.input,
            output=step.output,
            log=step.log or "",
            error=step.error,
            started_at=step.started_at,
            finished_at=step.finished_at,
        )
        for step in runs.steps_of(session=session, run_id=run.id)
    ]
    awaiting: list[str] = []
    why: str | None = None
    if run.status == RunStatus.AWAITING_APPROVAL.value:
        asked = runs.approvers(session=session, run=run)
        awaiting = [e for e in (_email(session, i) for i in asked.user_ids) if e is not None]
        why = asked.why
    waiting_for = None
    if run.status == RunStatus.AWAITING_DECISION.value:
        waiting = next((s for s in steps if s.status == "waiting"), None)
        if waiting is not None and "waiting for " in waiting.log:
            waiting_for = waiting.log.rsplit("waiting for ", 1)[1].split("\n", 1)[0]
    outputs: dict[str, Any] = {"links": [], "entities": []}
    if run.status == RunStatus.SUCCEEDED.value:
        outputs = runs.rendered_outputs(session=session, run=run)
    secrets = runs.action_secrets(session=session, run_id=run.id)
    return RunDetail(
        **run_read(session, run).model_dump(),
        approval=str(run.spec.get("approval", "none")),
        awaiting=awaiting,
        awaiting_why=why,
        waiting_for=waiting_for,
        steps=steps,
        outputs=outputs,
        secrets=[SecretBrief(name=name, revealed=revealed) for name, revealed in secrets],
    )


@router.post(
    "/templates/{name}/runs", response_model=RunDetail, status_code=status.HTTP_201_CREATED
)
def start_run(
    name: str,
    body: RunStart,
    response: Response,
    session: SessionDep,
    actor: CurrentActor,
    box: BoxDep,
    settings: SettingsDep,
) -> RunDetail:
    """Start a run: the parameters are checked first, against the template's schema, the
    catalog (references exist, names are free) and this installation (every step that runs
    can run here); every problem is named at once. The run is then queued for the worker, or
    waits for approval when the template asks for one. Poll ``GET /runs/{id}``. A dry run is
    created without those checks and fails on the first step that would fail."""
    with fields_under("body"):
        run = runs.start(
            session=session,
            actor=actor,
            template_name=name,
            parameters=body.parameters,
            dry_run=body.dry_run,
            requesting_team=body.requesting_team,
            box=box,
            settings=settings,
        )
    session.commit()
    response.headers["Location"] = f"/api/v1/runs/{run.id}"
    return run_detail(session, run)


@router.get("/runs", response_model=Page[RunRead])
def list_runs(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    template: Annotated[str | None, Query(max_length=63, description="Template name")] = None,
    status_: Annotated[
        str | None,
        Query(
            alias="status",
            pattern="^(awaiting_approval|awaiting_decision|queued|running|succeeded|failed|"
            "rejected)$",
        ),
    ] = None,
    mine: Annotated[bool, Query(description="Only the runs you started.")] = False,
) -> Page[RunRead]:
    """Runs, newest first."""
    template_id = templates.get(session=session, name=template).id if template else None
    if mine and actor.user_id is None:
        return Page[RunRead](items=[], next_cursor=None)
    rows = runs.list_(
        session=session,
        template_id=template_id,
        requester_user_id=actor.user_id if mine else None,
        status=status_,
        before_id=page.position,
        limit=page.limit + 1,
    )
    items, cursor = page_of(rows, page.limit, lambda r: r.id)
    return Page[RunRead](items=[run_read(session, r) for r in items], next_cursor=cursor)


@router.get("/runs/{run_id:int}", response_model=RunDetail)
def read_run(run_id: Id, session: SessionDep, actor: CurrentActor) -> RunDetail:
    """Each step's status, rendered input, output, log and error; the journal ticket."""
    return run_detail(session, runs.get(session=session, run_id=run_id))


@router.post("/runs/{run_id:int}/approve", response_model=RunDetail)
def approve_run(
    run_id: Id,
    session: SessionDep,
    actor: CurrentActor,
    body: RunDecision | None = None,
) -> RunDetail:
    """Let a run waiting for approval go ahead (the owning team's lead, or an SRE)."""
    run = runs.approve(
        session=session, actor=actor, run_id=run_id, reason=body.reason if body else ""
    )
    session.commit()
    return run_detail(session, run)


@router.post(
    "/runs/{run_id:int}/reject",
    response_model=RunDetail,
    # The body is required (the reason); it is optional in the signature only so that a request
    # without one is told which field is missing, as every other refusal names its field.
    openapi_extra={"requestBody": {"required": True}},
)
def reject_run(
    run_id: Id, session: SessionDep, actor: CurrentActor, body: RunRejection | None = None
) -> RunDetail:
    """End a run waiting for approval; the reason is required and told to the requester."""
    reason = _required_reason(body)
    with fields_under("body"):
        run = runs.reject(session=session, actor=actor, run_id=run_id, reason=reason)
    session.commit()
    return run_detail(session, run)


@router.post("/runs/{run_id:int}/retry", response_model=RunDetail)
def retry_run(run_id: Id, session: SessionDep, actor: CurrentActor) -> RunDetail:
    """Queue a failed run again from its failed step (the requester, SREs and admins)."""
    run = runs.retry(session=session, actor=actor, run_id=run_id)
    session.commit()
    return run_detail(session, run)


@router.post("/runs/{run_id:int}/secrets/reveal", response_model=SecretsRevealed)
def reveal_secrets(
    run_id: Id, response: Response, session: SessionDep, actor: CurrentActor, box: BoxDep
) -> SecretsRevealed:
    """The run's secrets in plain text, once, to its requester; 409 the second time."""
    response.headers["Cache-Control"] = "no-store"
    shown = runs.reveal_secrets(session=session, actor=actor, run_id=run_id, box=box)
    session.commit()
    return SecretsRevealed(run_id=run_id, secrets=shown)


# -- access grants -----------------------------------------------------------------------------
def grant_read(session: Session, grant: grants.AccessGrant) -> GrantRead:
    entity = session.get(Entity, grant.entity_id)
    return GrantRead(
        id=grant.id,
        entity=entity.ref if entity is not None else str(grant.entity_id),
        grantee_user=_email(session, grant.grantee_user_id),
        grantee_team=_slug(session, grant.grantee_team_id),
        access=grant.access,
        reason=grant.reason,
        status=grant.status,
        requested_by=_email(session, grant.requested_by_user_id),
        approver=_email(session, grant.approver_user_id),
        decided_at=grant.decided_at,
        decision_reason=grant.decision_reason,
        expires_at=grant.expires_at,
        revoked_at=grant.revoked_at,
        revoked_by=_email(session, grant.revoked_by_user_id),
        run_id=grant.run_id,
        created_at=grant.created_at,
    )


@router.get("/catalog/entities/{kind}/{namespace}/{name}/grants", response_model=Page[GrantRead])
def list_entity_grants(
    kind: KindPath,
    namespace: NamePath,
    name: NamePath,
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
) -> Page[GrantRead]:
    """Every grant of the resource, whatever its status (revoked and expired too), newest first."""
    entity = catalog.get_by_ref(session=session, ref=f"{kind}:{namespace}/{name}")
    items, cursor = _offset_page(grants.grants_for_entity(session, entity.id), page)
    return Page[GrantRead](items=[grant_read(session, g) for g in items], next_cursor=cursor)


def _grantee(session: Session, actor: Actor, body: GrantCreate) -> grants.Grantee:
    if body.grantee is None:
        return grants.Grantee(user_id=actor.user_id)
    if body.grantee.user is not None and body.grantee.team is not None:
        raise ValidationFailed.one("body.grantee", "name exactly one user or one team")
    if body.grantee.user is not None:
        user = identity.get_user_by_email(session=session, email=str(body.grantee.user))
        if user is None:
            raise ValidationFailed.one("body.grantee.user", "no user with that email")
        return grants.Grantee(user_id=user.id)
    if body.grantee.team is not None:
        try:
            return grants.Grantee(
                team_id=identity.get_team(session=session, slug=body.grantee.team).id
            )
        except NotFound:
            raise ValidationFailed.one("body.grantee.team", "no team with that slug") from None
    raise ValidationFailed.one("body.grantee", "name exactly one user or one team")


@router.post("/grants", response_model=GrantRead, status_code=status.HTTP_201_CREATED)
def request_grant(body: GrantCreate, session: SessionDep, actor: CurrentActor) -> GrantRead:
    """Ask for access to a catalog resource, for yourself by default. Active at once when you
    may approve it yourself; otherwise the accountable person (or team lead) is asked."""
    if body.duration_days is not None and body.expires_at is not None:
        raise ValidationFailed.one("body.expires_at", "send duration_days or expires_at, not both")
    try:
        entity = catalog.get_by_ref(session=session, ref=body.entity)
    except NotFound as exc:
        raise ValidationFailed.one("body.entity", exc.detail) from None
    with fields_under("body"):
        grant = grants.request_grant(
            session=session,
            actor=actor,
            entity_id=entity.id,
            grantee=_grantee(session, actor, body),
            access=body.access,
            reason=body.reason,
            duration=(dt.timedelta(days=body.duration_days) if body.duration_days else None),
            expires_at=body.expires_at,
        )
    session.commit()
    return grant_read(session, grant)


@router.get("/grants", response_model=Page[GrantRead])
def list_grants(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    view: Annotated[
        str,
        Query(
            pattern="^(mine|decide)$",
            description="mine: yours or your teams' and those you asked for; decide: pending "
            "requests you may approve.",
        ),
    ] = "mine",
) -> Page[GrantRead]:
    """Access grants, newest first."""
    if view == "decide":
        rows = _grants_to_decide(session, actor, before_id=page.position, limit=page.limit + 1)
    else:
        rows = _grants_of(session, actor, before_id=page.position, limit=page.limit + 1)
    items, cursor = page_of(rows, page.limit, lambda g: g.id)
    return Page[GrantRead](items=[grant_read(session, g) for g in items], next_cursor=cursor)


@router.post("/grants/{grant_id:int}/approve", response_model=GrantRead)
def approve_grant(
    grant_id: Id, session: SessionDep, actor: CurrentActor, body: GrantDecision | None = None
) -> GrantRead:
    """Approve a pending request (the accountable person, else the team lead, or an admin)."""
    grant = grants.approve(
        session=session, actor=actor, grant_id=grant_id, reason=body.reason if body else None
    )
    session.commit()
    return grant_read(session, grant)


@router.post(
    "/grants/{grant_id:int}/reject",
    response_model=GrantRead,
    openapi_extra={"requestBody": {"required": True}},  # the reason; see reject_run
)
def reject_grant(
    grant_id: Id, session: SessionDep, actor: CurrentActor, body: GrantRejection | None = None
) -> GrantRead:
    """Reject a pending request; the reason is required and told to the requester."""
    reason = _required_reason(body)
    grant = grants.reject(session=session, actor=actor, grant_id=grant_id, reason=reason)
    session.commit()
    return grant_read(session, grant)


@router.post("/grants/{grant_id:int}/revoke", response_model=GrantRead)
def revoke_grant(
    grant_id: Id, session: SessionDep, actor: CurrentActor, body: GrantDecision | None = None
) -> GrantRead:
    """End a pending or active grant now (deciders, admins, the grantee and the requester)."""
    grant = grants.revoke(
        session=session, actor=actor, grant_id=grant_id, reason=body.reason if body else None
    )
    session.commit()
    return grant_read(session, grant)


# -- grant queries the grants service does not have yet (candidates for grants.list_) -----------
def _grants_of(
    session: Session, actor: Actor, *, before_id: int | None, limit: int
) -> list[grants.AccessGrant]:
    """Grants to the actor, to the actor's teams, or asked for by the actor; newest first."""
    if actor.user_id is None:
        return []
    my_teams = identity.team_ids_of(session=session, user_id=actor.user_id)
    query = sa.select(grants.AccessGrant).where(
        sa.or_(
            grants.AccessGrant.grantee_user_id == actor.user_id,
            grants.AccessGrant.requested_by_user_id == actor.user_id,
            grants.AccessGrant.grantee_team_id.in_(my_teams),
        )
    )
    if before_id:
        query = query.where(grants.AccessGrant.id < before_id)
    return list(session.scalars(query.order_by(grants.AccessGrant.id.desc()).limit(limit)))


def _grants_to_decide(
    session: Session, actor: Actor, *, before_id: int | None, limit: int
) -> list[grants.AccessGrant]:
    """Pending requests the actor may approve or reject; newest first."""
    found: list[grants.AccessGrant] = []
    position = before_id
    while len(found) < limit:
        query = sa.select(grants.AccessGrant).where(
            grants.AccessGrant.status == grants.GrantStatus.PENDING.value
        )
        if position:
            query = query.where(grants.AccessGrant.id < position)
        batch = list(session.scalars(query.order_by(grants.AccessGrant.id.desc()).limit(200)))
        if not batch:
            break
        for grant in batch:
            entity = session.get(Entity, grant.entity_id)
            if entity is not None and grants.may_decide(session, actor, entity):
                found.append(grant)
                if len(found) == limit:
                    break
        position = batch[-1].id
    return found
