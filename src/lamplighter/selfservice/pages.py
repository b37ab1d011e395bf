"""Self-service pages: the templates, a template's form, a run with live steps, approvals,
secrets shown once, and access grants.

Thin adapters like the other domains' pages: parse the form, call one service function, commit
once, then redirect (303) with a message. Everything works without JavaScript; HTMX only
refreshes a running run's steps every second. The run page reads only the database, so it
follows a worker running in another process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Annotated, Any

import markupsafe
import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity
from lamplighter.core import audit, identity, people
from lamplighter.core.authz import PRIVILEGED
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import utcnow
from lamplighter.core.deps import Id, PageDep, SessionDep
from lamplighter.core.errors import LamplighterError, ValidationFailed
from lamplighter.core.models import Role, Team, User
from lamplighter.core.pagination import MAX_LIMIT, page_of
from lamplighter.core.webui import (
    FormField,
    FormState,
    PageRoute,
    QueryText,
    Viewer,
    ViewerDep,
    WriterDep,
    check_lengths,
    form_failed,
    is_htmx,
    page_links,
    redirect_after_post,
    render,
    render_panel,
)
from lamplighter.selfservice import forms, grants, preflight, runs, templates
from lamplighter.selfservice.grants import AccessGrant, GrantStatus
from lamplighter.selfservice.models import Approval, Run, RunStatus, StepStatus, Template

router = APIRouter(include_in_schema=False, route_class=PageRoute)

APPROVAL_NAMES = {
    Approval.NONE.value: "No approval",
    Approval.TEAM_LEAD.value: "The owning team's lead approves",
    Approval.SRE.value: "An SRE approves",
}
ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
AWAITING_SCAN = 500  # runs awaiting approval looked at for "waiting for you"


# -- reads the service modules do not offer (yet) ---------------------------------------------
def _secret_names(session: Session, run_id: int) -> tuple[list[str], bool]:
    """The names of a run's secrets, and whether some are still unseen."""
    rows = runs.action_secrets(session=session, run_id=run_id)
    return [name for name, _ in rows], any(not revealed for _, revealed in rows)


def _grants_of(session: Session, user_id: int, team_ids: Iterable[int]) -> list[AccessGrant]:
    """Grants held by a user or their teams, or asked for by the user, newest first."""
    teams = list(team_ids)
    return list(
        session.scalars(
            sa.select(AccessGrant)
            .where(
                sa.or_(
                    AccessGrant.grantee_user_id == user_id,
                    AccessGrant.requested_by_user_id == user_id,
                    AccessGrant.grantee_team_id.in_(teams) if teams else sa.false(),
                )
            )
            .order_by(AccessGrant.created_at.desc(), AccessGrant.id.desc())
            .limit(200)
        )
    )


def _pending_grants(session: Session) -> list[AccessGrant]:
    return list(
        session.scalars(
            sa.select(AccessGrant)
            .where(AccessGrant.status == GrantStatus.PENDING.value)
            .order_by(AccessGrant.created_at, AccessGrant.id)
            .limit(AWAITING_SCAN)
        )
    )


# -- small helpers ------------------------------------------------------------------------------
def _pretty(value: Any) -> str:
    """JSON as a person reads it (the template escapes it)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _teams_by_id(session: Session, ids: Iterable[int | None]) -> dict[int, Team]:
    return people.teams_by_id(session=session, ids=ids)


def _people(session: Session, ids: Iterable[int | None]) -> dict[int, User]:
    return {i: identity.get_user(session=session, user_id=i) for i in set(ids) if i is not None}


def _may_use(viewer: Viewer, template: Template, my_slugs: set[str]) -> bool:
    if viewer.actor.role == Role.VIEWER.value:
        return False
    if not template.allowed_teams or viewer.actor.role in PRIVILEGED:
        return True
    return bool(my_slugs & set(template.allowed_teams))


def _my_teams(session: Session, viewer: Viewer, template: Template | None) -> list[Team]:
    everyone = identity.list_teams(session=session, after_id=None, limit=MAX_LIMIT)
    mine = [t for t in everyone if t.id in viewer.actor.team_ids]
    if template is not None and template.allowed_teams and viewer.actor.role not in PRIVILEGED:
        mine = [t for t in mine if t.slug in template.allowed_teams]
    return mine


# -- the templates ------------------------------------------------------------------------------
@router.get("/selfservice")
def templates_page(
    request: Request, session: SessionDep, viewer: ViewerDep, q: QueryText = ""
) -> Response:
    query = q.strip().lower()
    my_slugs = {t.slug for t in _my_teams(session, viewer, None)}
    everything = templates.list_(session=session)
    teams = _teams_by_id(session, [t.owner_team_id for t in everything])
    usable = [t for t in everything if _may_use(viewer, t, my_slugs)]
    hidden = len(everything) - len(usable)
    if query:
        usable = [
            t
            for t in usable
            if all(word in f"{t.name} {t.title} {t.description}".lower() for word in query.split())
        ]
    groups: dict[str, list[Template]] = {}
    for template in usable:
        team = teams.get(template.owner_team_id)
        groups.setdefault(team.name if team else "No team", []).append(template)
    settings = request.app.state.settings
    context = {
        "groups": sorted(groups.items()),
        "teams": teams,
        "approval_names": APPROVAL_NAMES,
        "availability": {t.name: preflight.availability(t.spec or {}, settings) for t in usable},
        "decided_by": {t.name: templates.decided_by(t.spec or {}) for t in usable},
        "form": FormState({"q": q.strip()}),
        "hidden": hidden,
        "query": query,
    }
    name = "selfservice/_templates.html" if is_htmx(request) else "selfservice/templates.html"
    return render(request, name, context, viewer=viewer, fragment=is_htmx(request))


def _form_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    template: Template,
    form: forms.ParamForm | None = None,
    status: int = 200,
    review_form: Any = None,  # a FormState when a rejection came back with its errors
) -> Response:
    fields = forms.fields_of(template.spec.get("parameters") or {})
    my_teams = _my_teams(session, viewer, template)
    owner = _teams_by_id(session, [template.owner_team_id]).get(template.owner_team_id)
    available = preflight.availability(template.spec or {}, request.app.state.settings)
    if form is None:
        form = forms.blank(fields, my_teams[0].slug if my_teams else "")
        # Steps this installation cannot run start switched off, where a parameter can.
        for notice in available.optional:
            for name in notice.switches:
                if name in form.values:
                    form.values[name] = ""
        form.values.update(_prefill(session, viewer, request, fields))
    context = {
        "template": template,
        "owner": owner,
        "fields": fields,
        "form": form,
        "availability": available,
        "field_labels": {f.name: f.label for f in fields},
        "decided_by": templates.decided_by(template.spec or {}),
        "team_choices": _team_choices(session, viewer, my_teams),
        "approval_names": APPROVAL_NAMES,
        "steps": template.spec.get("steps") or [],
        "may_use": _may_use(viewer, template, {t.slug for t in my_teams})
        and templates.is_published(template)
        and available.runnable,
        "published": templates.is_published(template),
        "effective_approval": templates.effective_approval(template.spec or {}).value,
        "draft": template.draft,
        "draft_steps": (template.draft or {}).get("steps") or [],
        "draft_privileged": templates.privileged_actions(template.draft or {}),
        "may_review": templates.may_review(viewer.actor),
        "review_form": review_form,
    }
    return render(request, "selfservice/form.html", context, viewer=viewer, status=status)


def _team_choices(session: Session, viewer: Viewer, mine: list[Team]) -> list[tuple[str, str]]:
    """The teams a run may be for: the viewer's own, and for SREs and admins (who may run for
    any team) every other team after them, so an admin in no team is not stuck with none."""
    choices = [(t.slug, t.name) for t in mine]
    if viewer.actor.role in PRIVILEGED:
        taken = {t.id for t in mine}
        everyone = identity.list_teams(session=session, after_id=None, limit=MAX_LIMIT)
        choices += [(t.slug, f"{t.name} (not your team)") for t in everyone if t.id not in taken]
    return choices


def _prefill(
    session: Session, viewer: Viewer, request: Request, fields: list[forms.ParamField]
) -> dict[str, str]:
    """Values for the form from the link that led here: ``?entity=resource:default/x`` (the
    entity page's "Request access"), or ``?from_run=<id>`` (a run's "Edit and run again":
    its parameters, secrets left out, for its requester, SREs and admins)."""
    names = {f.name: f for f in fields}
    values: dict[str, str] = {}
    source = request.query_params.get("from_run", "")
    if source.isdecimal() and len(source) < 12:
        run = session.get(Run, int(source))
        if run is not None and (
            run.requester_user_id == viewer.user.id or viewer.actor.role in PRIVILEGED
        ):
            for key, value in (run.parameters or {}).items():
                f = names.get(key)
                if f is None or f.widget == "password" or value == runs.REDACTED:
                    continue
                if f.widget == "checkbox":
                    values[key] = "on" if value else ""
                elif isinstance(value, list):
                    values[key] = "\n".join(str(v) for v in value)
                elif isinstance(value, dict):
                    values[key] = orjson.dumps(value).decode()
                else:
                    values[key] = str(value)
    for key, value in request.query_params.items():
        f = names.get(key)
        if f is not None and f.widget != "password" and len(value) <= 1000:
            values[key] = value
    return values


@router.get("/selfservice/templates/{name}")
def template_form(request: Request, session: SessionDep, viewer: ViewerDep, name: str) -> Response:
    return _form_page(request, session, viewer, templates.get(session=session, name=name))


@router.post("/selfservice/templates/{name}/draft/approve")
def approve_template_draft(
    request: Request, session: SessionDep, viewer: WriterDep, name: str, reason: FormField = ""
) -> Response:
    check_lengths({"reason": reason}, {"reason": 2_000})
    template = templates.approve_draft(
        session=session, actor=viewer.actor, name=name, reason=reason
    )
    version = template.version
    session.commit()
    return redirect_after_post(
        request,
        f"/selfservice/templates/{name}",
        f"Template {name} version {version} published; runs use it from now on.",
        viewer,
    )


@router.post("/selfservice/templates/{name}/draft/reject")
def reject_template_draft(
    request: Request, session: SessionDep, viewer: WriterDep, name: str, reason: FormField = ""
) -> Response:
    values = {"reason": reason}
    try:
        check_lengths(values, {"reason": 2_000})
        templates.reject_draft(session=session, actor=viewer.actor, name=name, reason=reason)
        session.commit()
    except ValidationFailed as exc:
        session.rollback()
        template = templates.get(session=session, name=name)
        return _form_page(
            request,
            session,
            viewer,
            template,
            status=exc.status,
            review_form=form_failed(values, exc),
        )
    return redirect_after_post(
        request,
        f"/selfservice/templates/{name}",
        f"The changes to {name} were rejected; the author can read why in its history.",
        viewer,
    )


async def _multi_form(request: Request) -> dict[str, list[str]]:
    """Every field of the submitted form, with all its values (checkbox groups send several)."""
    form = await request.form()
    result: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            result.setdefault(key, []).append(value)
    return result


MultiForm = Annotated[dict[str, list[str]], Depends(_multi_form)]


@router.post("/selfservice/templates/{name}")
def start_run(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    name: str,
    sent: MultiForm,
    requesting_team: FormField = "",
    mode: FormField = "run",
) -> Response:
    template = templates.get(session=session, name=name)
    schema = template.spec.get("parameters") or {}
    fields = forms.fields_of(schema)
    team = requesting_team.strip()
    shown = forms.echo(fields, sent)
    dry_run = mode == "dry-run"
    try:
        parameters = forms.read(fields, schema, sent, runs.validate_parameters)
        run = runs.start(
            session=session,
            actor=viewer.actor,
            template_name=template.name,
            parameters=parameters,
            dry_run=dry_run,
            requesting_team=team or None,
            box=request.app.state.box,
            settings=request.app.state.settings,
        )
        run_id = run.id
        awaiting = run.status == RunStatus.AWAITING_APPROVAL.value
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        if exc.status in {401, 403, 404}:
            raise
        form = forms.failed(fields, shown, team, exc)
        template = templates.get(session=session, name=name)
        return _form_page(request, session, viewer, template, form, status=exc.status)
    if dry_run:
        message = f"Dry run {run_id} started: each step is checked; nothing is created."
    elif awaiting:
        message = f"Run {run_id} waits for approval; the approvers were told in their inbox."
    else:
        message = f"Run {run_id} started."
    return redirect_after_post(request, f"/selfservice/runs/{run_id}", message, viewer)


# -- runs ---------------------------------------------------------------------------------------
def _may_approve(session: Session, viewer: Viewer, run: Run) -> bool:
    if run.status != RunStatus.AWAITING_APPROVAL.value or viewer.user.id == run.requester_user_id:
        return False
    if viewer.actor.role == Role.ADMIN.value:
        return True
    return viewer.user.id in runs.approver_ids(session=session, run=run)


def _run_context(
    session: Session, viewer: Viewer, run_id: int, reject_form: FormState | None = None
) -> dict[str, Any]:
    run = runs.get(session=session, run_id=run_id)
    steps = runs.steps_of(session=session, run_id=run.id)
    titles = {s["id"]: s.get("title") for s in run.spec.get("steps") or []}
    people = _people(session, [run.requester_user_id, run.approver_user_id])
    team = _teams_by_id(session, [run.requesting_team_id]).get(run.requesting_team_id or 0)
    secret_names, unseen = _secret_names(session, run.id)
    is_requester = viewer.user.id == run.requester_user_id
    return {
        "run": run,
        "steps": steps,
        "step_titles": titles,
        "parameters": audit.redact(run.parameters),
        "requester": people.get(run.requester_user_id or 0),
        "approver": people.get(run.approver_user_id or 0),
        "team": team,
        "outputs": runs.rendered_outputs(session=session, run=run)
        if run.status == RunStatus.SUCCEEDED.value
        else None,
        "live": run.status in ACTIVE,
        "approval_name": APPROVAL_NAMES.get(run.spec.get("approval", ""), ""),
        "approvers": _approvers_of(session, run),
        "waiting_step": next((s for s in steps if s.status == StepStatus.WAITING.value), None),
        "may_approve": _may_approve(session, viewer, run),
        "may_retry": run.status == RunStatus.FAILED.value
        and viewer.actor.role != Role.VIEWER.value
        and (is_requester or viewer.actor.role in PRIVILEGED),
        "may_rerun": run.status in (RunStatus.FAILED.value, RunStatus.REJECTED.value) or run.dry_run
        if viewer.actor.role != Role.VIEWER.value
        and (is_requester or viewer.actor.role in PRIVILEGED)
        else False,
        "secret_names": secret_names,
        "may_reveal": is_requester and unseen,
        "secrets_seen": is_requester and bool(secret_names) and not unseen,
        "reject_form": reject_form or FormState({"reason": ""}),
        "pretty": _pretty,
    }


def _approvers_of(session: Session, run: Run) -> dict[str, Any] | None:
    """Who may approve a run waiting for approval, by name, and why them."""
    if run.status != RunStatus.AWAITING_APPROVAL.value:
        return None
    asked = runs.approvers(session=session, run=run)
    named = _people(session, asked.user_ids)
    return {
        "people": [named[i] for i in asked.user_ids if i in named],
        "why": asked.why,
    }


@router.get("/selfservice/runs")
def runs_page(request: Request, session: SessionDep, viewer: ViewerDep, page: PageDep) -> Response:
    mine, cursor = page_of(
        runs.list_(
            session=session,
            requester_user_id=viewer.user.id,
            before_id=page.position,
            limit=page.limit + 1,
        ),
        page.limit,
        lambda r: r.id,
    )
    awaiting = runs.waiting_for(session=session, user_id=viewer.user.id)
    decisions = grants.waiting_for(session=session, user_id=viewer.user.id)
    people = _people(session, [r.requester_user_id for r in awaiting])
    context = {
        "mine": mine,
        "awaiting": awaiting,
        "decisions": _grant_rows(session, decisions),
        "people": people,
        **page_links(request, cursor, page.position),
    }
    return render(request, "selfservice/runs.html", context, viewer=viewer)


@router.get("/selfservice/runs/{run_id:int}")
def run_page(request: Request, session: SessionDep, viewer: ViewerDep, run_id: Id) -> Response:
    context = _run_context(session, viewer, run_id)
    return render(request, "selfservice/run.html", context, viewer=viewer)


@router.get("/selfservice/runs/{run_id:int}/live")
def run_live(request: Request, session: SessionDep, viewer: ViewerDep, run_id: Id) -> Response:
    """The part of the run page that changes while the run goes on (polled by HTMX)."""
    context = _run_context(session, viewer, run_id)
    return render(request, "selfservice/_live.html", context, viewer=viewer, fragment=True)


def _decided(request: Request, viewer: Viewer, run_id: int, message: str) -> Response:
    return redirect_after_post(request, f"/selfservice/runs/{run_id}", message, viewer)


@router.post("/selfservice/runs/{run_id:int}/approve")
def approve_run(
    request: Request, session: SessionDep, viewer: WriterDep, run_id: Id, reason: FormField = ""
) -> Response:
    check_lengths({"reason": reason}, {"reason": 2_000})
    runs.approve(session=session, actor=viewer.actor, run_id=run_id, reason=reason)
    session.commit()
    return _decided(request, viewer, run_id, f"Run {run_id} approved; it starts now.")


@router.post("/selfservice/runs/{run_id:int}/reject")
def reject_run(
    request: Request, session: SessionDep, viewer: WriterDep, run_id: Id, reason: FormField = ""
) -> Response:
    values = {"reason": reason}
    try:
        check_lengths(values, {"reason": 2_000})
        runs.reject(session=session, actor=viewer.actor, run_id=run_id, reason=reason)
        session.commit()
    except ValidationFailed as exc:
        session.rollback()
        context = _run_context(session, viewer, run_id, form_failed(values, exc))
        return render(request, "selfservice/run.html", context, viewer=viewer, status=exc.status)
    return _decided(request, viewer, run_id, f"Run {run_id} rejected; the requester was told why.")


@router.post("/selfservice/runs/{run_id:int}/retry")
def retry_run(request: Request, session: SessionDep, viewer: WriterDep, run_id: Id) -> Response:
    runs.retry(session=session, actor=viewer.actor, run_id=run_id)
    session.commit()
    return _decided(request, viewer, run_id, f"Run {run_id} queued again from its failed step.")


@router.post("/selfservice/runs/{run_id:int}/secrets")
def reveal_secrets(
    request: Request, session: SessionDep, viewer: WriterDep, run_id: Id
) -> Response:
    """Show the run's secrets on this response only; the page is never cached."""
    box: SecretBox = request.app.state.box
    values = runs.reveal_secrets(session=session, actor=viewer.actor, run_id=run_id, box=box)
    session.commit()
    context = {"run": runs.get(session=session, run_id=run_id), "secrets": values}
    return render(request, "selfservice/secrets.html", context, viewer=viewer)


# -- access grants ------------------------------------------------------------------------------
def _grant_rows(session: Session, items: list[AccessGrant]) -> list[dict[str, Any]]:
    entities = {
        e.id: e
        for e in (session.get(Entity, i) for i in {g.entity_id for g in items})
        if e is not None
    }
    people = _people(
        session,
        [g.grantee_user_id for g in items] + [g.requested_by_user_id for g in items],
    )
    teams = _teams_by_id(session, [g.grantee_team_id for g in items])
    rows = []
    for grant in items:
        entity = entities.get(grant.entity_id)
        user = people.get(grant.grantee_user_id or 0)
        team = teams.get(grant.grantee_team_id or 0)
        requester = people.get(grant.requested_by_user_id or 0)
        rows.append(
            {
                "grant": grant,
                "entity": entity,
                "entity_url": f"/catalog/{entity.kind}/{entity.namespace}/{entity.name}"
                if entity
                else None,
                "grantee": user.email if user else (f"team {team.slug}" if team else "—"),
                "requester": requester.email if requester else "—",
            }
        )
    return rows


def _access_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    status: int = 200,
    reject_error: tuple[int, str] | None = None,
) -> Response:
    mine = _grants_of(session, viewer.user.id, viewer.actor.team_ids)
    waiting = []
    for grant in _pending_grants(session):
        entity = session.get(Entity, grant.entity_id)
        if entity is not None and grants.may_decide(session, viewer.actor, entity):
            waiting.append(grant)
    revocable = {
        g.id
        for g in mine + waiting
        if g.status in grants.LIVE_STATUSES
        and (entity := session.get(Entity, g.entity_id)) is not None
        and grants.may_revoke(session, viewer.actor, g, entity)
    }
    context = {
        "mine": _grant_rows(session, mine),
        "waiting": _grant_rows(session, waiting),
        "revocable": revocable,
        "reject_error": reject_error,
        "may_request": viewer.actor.role != Role.VIEWER.value,
    }
    return render(request, "selfservice/access.html", context, viewer=viewer, status=status)


@router.get("/selfservice/access")
def access_page(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    return _access_page(request, session, viewer)


@router.post("/selfservice/access/{grant_id:int}/approve")
def approve_grant(
    request: Request, session: SessionDep, viewer: WriterDep, grant_id: Id, reason: FormField = ""
) -> Response:
    check_lengths({"reason": reason}, {"reason": 2_000})
    grants.approve(session=session, actor=viewer.actor, grant_id=grant_id, reason=reason)
    session.commit()
    return redirect_after_post(
        request, "/selfservice/access", f"Access grant #{grant_id} approved.", viewer
    )


@router.post("/selfservice/access/{grant_id:int}/reject")
def reject_grant(
    request: Request, session: SessionDep, viewer: WriterDep, grant_id: Id, reason: FormField = ""
) -> Response:
    values = {"reason": reason}
    try:
        check_lengths(values, {"reason": 2_000})
        grants.reject(session=session, actor=viewer.actor, grant_id=grant_id, reason=reason)
        session.commit()
    except ValidationFailed as exc:
        session.rollback()
        problem = exc.errors[0].reason if exc.errors else exc.detail
        return _access_page(
            request, session, viewer, status=exc.status, reject_error=(grant_id, problem)
        )
    return redirect_after_post(
        request, "/selfservice/access", f"Access grant #{grant_id} rejected.", viewer
    )


@router.post("/selfservice/access/{grant_id:int}/revoke")
def revoke_grant(
    request: Request, session: SessionDep, viewer: WriterDep, grant_id: Id
) -> Response:
    grants.revoke(session=session, actor=viewer.actor, grant_id=grant_id)
    session.commit()
    return redirect_after_post(
        request, "/selfservice/access", f"Access grant #{grant_id} revoked.", viewer
    )


# -- the catalog entity page's panel: who has access ------------------------------------------
ACCESS_SHOWN = 50
TIME_UNITS = (("day", 24 * 60), ("hour", 60), ("minute", 1))


def _span(length: dt.timedelta) -> str:
    """A length of time in its largest whole unit: "3 days", "1 hour", "0 minutes"."""
    minutes = int(abs(length).total_seconds() // 60)
    unit, size = next((u, s) for u, s in TIME_UNITS if minutes >= s or s == 1)
    count = minutes // size
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _from_now(instant: dt.datetime, now: dt.datetime) -> str:
    """How far an instant is from now: "in 3 days", "5 hours ago"."""
    if abs(instant - now) < dt.timedelta(minutes=1):
        return "now"
    return f"in {_span(instant - now)}" if instant > now else f"{_span(now - instant)} ago"


def _expiry(grant: AccessGrant, now: dt.datetime) -> str:
    status = GrantStatus(grant.status)
    if status == GrantStatus.PENDING:
        # Approval starts the clock again, so the request's length is what it asks for.
        return f"{_span(grant.expires_at - grant.created_at)} from approval"
    if status == GrantStatus.REJECTED:
        return "never granted"
    if status == GrantStatus.REVOKED:
        return "ended early, when revoked"
    return _from_now(grant.expires_at, now)


def access_panel(
    request: Request, session: Session, entity: Entity, viewer: Viewer
) -> markupsafe.Markup:
    """The entity's newest access grants with every person and team named (one query each)."""
    found = grants.grants_for_entity(session=session, entity_id=entity.id)
    shown = found[:ACCESS_SHOWN]
    persons = people.users_by_id(
        session=session,
        ids=[
            user_id
            for g in shown
            for user_id in (
                g.grantee_user_id,
                g.requested_by_user_id,
                g.approver_user_id,
                g.revoked_by_user_id,
            )
        ],
    )
    teams = people.teams_by_id(session=session, ids=[g.grantee_team_id for g in shown])
    now = utcnow()
    rows = [
        {
            "grant": grant,
            "user": persons.get(grant.grantee_user_id or 0),
            "team": teams.get(grant.grantee_team_id or 0),
            "requester": persons.get(grant.requested_by_user_id or 0),
            "approver": persons.get(grant.approver_user_id or 0),
            "revoker": persons.get(grant.revoked_by_user_id or 0),
            "expiry": _expiry(grant, now),
        }
        for grant in shown
    ]
    context = {
        "entity": entity,
        "access_rows": rows,
        "access_hidden": len(found) - len(shown),
        "may_request_access": viewer.actor.role != Role.VIEWER.value,
    }
    return render_panel(request, viewer, "selfservice/_entity_access.html", context)
