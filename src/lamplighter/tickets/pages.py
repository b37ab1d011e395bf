"""Ticket pages: the SRE queues, intake, a ticket with its timeline and forms, request types.

Thin adapters like the core pages: parse the form, call one service function, commit once,
then redirect (303) with a message. Everything works without JavaScript.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import markupsafe
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from markdown_it import MarkdownIt
from sqlalchemy.orm import Session

from lamplighter.core import identity, people
from lamplighter.core.authz import require_writer
from lamplighter.core.db import utcnow
from lamplighter.core.deps import Id, PageDep, SessionDep
from lamplighter.core.errors import (
    FieldError,
    LamplighterError,
    ValidationFailed,
)
from lamplighter.core.models import Role, User
from lamplighter.core.pagination import MAX_LIMIT
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
)
from lamplighter.tickets import queue_view, queues, service
from lamplighter.tickets.api import read_many
from lamplighter.tickets.models import (
    TRANSITIONS,
    Comment,
    Priority,
    Resolution,
    Status,
    StatusChange,
    Ticket,
    WorkLog,
)

router = APIRouter(include_in_schema=False, route_class=PageRoute)

VIEWS = {
    "triage": "Triage",
    "mine": "Mine",
    "team": "My team's",
    "breaching": "Breaching",
    "all": "All",
}
STATUSES = tuple(s.value for s in Status)
STATUS_NAMES = {s: s.replace("_", " ").capitalize() for s in STATUSES}
PRIORITIES = tuple(p.value for p in Priority)
PRIORITY_CHOICES = [
    ("P1", "P1: urgent, production is down or at risk"),
    ("P2", "P2: high, it blocks a team's work"),
    ("P3", "P3: normal"),
    ("P4", "P4: low, when there is time"),
]
RESOLUTION_CHOICES = [(r.value, r.value.capitalize()) for r in Resolution]
LABEL_RE = re.compile(r"^[a-z0-9:._-]{1,50}$")
DURATION_RE = re.compile(r"^(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?$")
ENTITY_REF_RE = re.compile(r"^([^:/]+):([^/]+)/(.+)$")
FILTERS = ("assignee", "requester", "type", "status", "priority", "label", "requesting_team")
MORE_FILTERS = ("type", "status", "priority", "label", "requesting_team")  # behind "More filters"
INTAKE_LIMITS = {
    "type": 63, "title": 300, "description": 50_000, "priority": 2, "requesting_team": 63,
    "entity": 200, "labels": 1_100,
}  # fmt: skip
MARKDOWN = MarkdownIt("commonmark", {"html": False}).disable("image")
Choices = list[tuple[str, str]]
OptionalField = Annotated[str | None, Form()]


# -- small presenters ----------------------------------------------------------------------------
def markdown(text: str) -> markupsafe.Markup:
    """Markdown as HTML: raw HTML is escaped, unsafe link schemes are dropped, no images."""
    tokens = MARKDOWN.parse(text)
    for token in tokens:  # the page has its own h1 and h2s: a description's headings start at h3
        if token.type in {"heading_open", "heading_close"}:
            token.tag = f"h{min(int(token.tag[1]) + 2, 6)}"
    # Safe: markdown-it escapes all text and raw HTML (html=False) and validates link URLs.
    return markupsafe.Markup(MARKDOWN.renderer.render(tokens, MARKDOWN.options, {}))  # noqa: S704


def format_minutes(minutes: int) -> str:
    """Minutes as a short duration a person reads at a glance: 90 → "1h 30m", 4320 → "3d"."""
    days, rest = divmod(int(minutes), 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return " ".join(p for p in parts if p) or "0m"


def parse_minutes(text: str, field: str, most: int, most_text: str) -> int:
    """Read "90", "90m", "1h 30m" or "3d" (a day is 24 hours) as 1 to ``most`` minutes."""
    value = text.strip().lower()
    match = DURATION_RE.match(value)
    if not value or not (match or value.isdecimal()):
        raise ValidationFailed.one(field, "enter a duration like 45m, 4h, 1h 30m or 3d")
    days, hours, mins = (int(group or 0) for group in match.groups()) if match else (0, 0, 0)
    minutes = int(value) if value.isdecimal() else days * 24 * 60 + hours * 60 + mins
    if not 1 <= minutes <= most:
        raise ValidationFailed.one(field, f"use between 1 minute and {most_text}")
    return minutes


def age(since: dt.datetime, now: dt.datetime) -> str:
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h" if minutes < 48 * 60 else f"{minutes // (24 * 60)}d"


def _labels(text: str) -> list[str]:
    """Comma-separated labels, each checked, so a mistake is reported on the labels field."""
    labels = [part.strip().lower() for part in text.split(",") if part.strip()]
    if len(labels) > 20:
        raise ValidationFailed.one("body.labels", "use at most 20 labels")
    for label in labels:
        if not LABEL_RE.match(label):
            reason = "labels are 1-50 lowercase letters, digits and : . _ - (no spaces)"
            raise ValidationFailed.one("body.labels", f"{label!r}: {reason}")
    return labels


def require_filled(values: Mapping[str, str], messages: Mapping[str, str]) -> None:
    errors = [FieldError(f"body.{k}", reason) for k, reason in messages.items() if not values[k]]
    if errors:
        raise ValidationFailed("; ".join(e.reason for e in errors), errors=errors)


def _teams(session: Session, viewer: Viewer) -> tuple[Choices, Choices]:
    """The viewer's teams and every other team, as (slug, name) choices for team pickers."""
    everyone = identity.list_teams(session=session, after_id=None, limit=MAX_LIMIT)
    mine = identity.team_ids_of(session=session, user_id=viewer.user.id)
    return (
        [(t.slug, t.name) for t in everyone if t.id in mine],
        [(t.slug, t.name) for t in everyone if t.id not in mine],
    )


# -- the queues --------------------------------------------------------------------------------
def _filters(
    session: Session, viewer: Viewer, view: str, values: dict[str, str]
) -> queues.QueueFilters:
    """The queue filters from the query; a label nobody uses simply matches nothing."""
    for name, allowed in (("status", STATUSES), ("priority", PRIORITIES)):
        if values[name] and values[name] not in allowed:
            raise ValidationFailed.one(f"query.{name}", f"choose one of {', '.join(allowed)}")

    def team_id(slug: str) -> int | None:
        return identity.get_team(session=session, slug=slug).id if slug else None

    assignee_id, unassigned = queues.person_filter(
        session=session,
        actor=viewer.actor,
        value=values["assignee"],
        field="query.assignee",
        allow_unassigned=True,
    )
    requester_id, _ = queues.person_filter(
        session=session, actor=viewer.actor, value=values["requester"], field="query.requester"
    )
    return queues.QueueFilters(
        view=view,
        user_id=viewer.user.id,
        team_id=team_id(values["team"]) if view == "team" else None,
        type_id=service.get_type(session=session, slug=values["type"], field="query.type").id
        if values["type"]
        else None,
        status=values["status"] or None,
        priority=values["priority"] or None,
        label=values["label"] or None,
        requesting_team_id=team_id(values["requesting_team"]),
        assignee_user_id=assignee_id,
        unassigned=unassigned,
        requester_user_id=requester_id,
    )


@router.get("/tickets")
def queue_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    page: PageDep,
    view: QueryText = "triage",
    team: QueryText = "",
    type: QueryText = "",
    status: QueryText = "",
    priority: QueryText = "",
    label: QueryText = "",
    requesting_team: QueryText = "",
    assignee: QueryText = "",
    requester: QueryText = "",
    sort: QueryText = "",
    dir: QueryText = "",
) -> Response:
    """The queues; HTMX asks for the results alone as filters change or a column is sorted."""
    if view not in VIEWS:
        raise ValidationFailed.one("query.view", f"choose one of {', '.join(VIEWS)}")
    typed = {
        "team": team, "type": type, "status": status, "label": label,
        "requesting_team": requesting_team, "assignee": assignee, "requester": requester,
    }  # fmt: skip
    values = {k: v.strip().lower() for k, v in typed.items()}
    values["priority"] = priority.strip().upper()
    order = queues.check_order(sort, dir)
    my_teams, other_teams = _teams(session, viewer)
    if view == "team" and not values["team"] and my_teams:
        values["team"] = my_teams[0][0]
    filters = _filters(session, viewer, view, values)
    # A team's view needs a team: someone in no team picks one first.
    items, cursor = (
        queues.queue_page(
            session=session,
            filters=filters,
            order=order,
            position=page.position,
            limit=page.limit,
        )
        if view != "team" or values["team"]
        else ([], None)
    )
    kept = {k: v for k, v in values.items() if v and k in FILTERS}
    team_param = {"team": values["team"]} if view == "team" and values["team"] else {}
    sorting = (
        {"sort": order.sort, "dir": "desc" if order.descending else "asc"}
        if order != queues.QueueOrder()
        else {}
    )
    types = service.list_types(session=session, include_inactive=True)
    users = people.users_by_id(
        session=session,
        ids=[t.requester_user_id for t in items] + [t.assignee_user_id for t in items],
    )
    assignees, requesters = queues.queue_people(session=session)
    now = utcnow()
    unit = queue_view.age_unit((t.created_at for t in items), now)
    rows = read_many(session, items)
    context = {
        "view": view,
        "views": VIEWS.items(),
        "tab_urls": {
            name: "/tickets?" + urlencode({"view": name, **kept, **sorting}) for name in VIEWS
        },
        "clear_url": "/tickets?" + urlencode({"view": view, **team_param, **sorting}),
        "headers": queue_view.headers({"view": view, **team_param, **kept}, order),
        "sorting": sorting,
        "rows": [
            (
                row,
                queue_view.names(users, ticket.requester_user_id),
                queue_view.names(users, ticket.assignee_user_id),
                queue_view.age_in(ticket.created_at, now, unit),
            )
            for row, ticket in zip(rows, items, strict=True)
        ],
        "age_rule": queue_view.AGE_RULE,
        "type_names": {t.slug: t.name for t in types},
        "type_choices": [(t.slug, t.name) for t in types],
        "priority_choices": [(p, p) for p in PRIORITIES],
        "assignee_choices": queue_view.person_choices(assignees, values["assignee"]),
        "requester_choices": queue_view.person_choices(requesters, values["requester"]),
        "my_teams": my_teams,
        "other_teams": other_teams,
        "form": FormState(values),
        "filtered": bool(kept),
        "more_filtered": any(values[k] for k in MORE_FILTERS),
        "statuses": STATUS_NAMES,
        **page_links(request, cursor, page.position),
    }
    # HTMX swaps only the results as filters change; a history restore needs the whole page.
    fragment = is_htmx(request) and "hx-history-restore-request" not in request.headers
    template = "tickets/_queue_results.html" if fragment else "tickets/queue.html"
    return render(request, template, context, viewer=viewer, fragment=fragment)


# -- intake ------------------------------------------------------------------------------------
def _intake(
    request: Request, session: Session, viewer: Viewer, form: FormState, status: int = 200
) -> Response:
    my_teams, other_teams = _teams(session, viewer)
    context = {
        "form": form,
        "type_choices": [
            (
                t.slug,
                f"{t.name}: {t.description} (about {format_minutes(t.expected_effort_minutes)})",
            )
            for t in service.list_types(session=session)
        ],
        "priority_choices": PRIORITY_CHOICES,
        "my_teams": my_teams,
        "other_teams": other_teams,
    }
    return render(request, "tickets/new.html", context, viewer=viewer, status=status)


@router.get("/tickets/new")
def new_ticket_form(
    request: Request, session: SessionDep, viewer: ViewerDep, type: QueryText = ""
) -> Response:
    require_writer(viewer.actor, "open tickets")
    my_teams, _ = _teams(session, viewer)
    values = dict.fromkeys(INTAKE_LIMITS, "") | {
        "type": type.strip().lower(),
        "priority": Priority.P3.value,
        "requesting_team": my_teams[0][0] if my_teams else "",
    }
    return _intake(request, session, viewer, FormState(values))


@router.post("/tickets")
def create_ticket(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    type: FormField = "",
    title: FormField = "",
    description: FormField = "",
    priority: FormField = "P3",
    requesting_team: FormField = "",
    entity: FormField = "",
    labels: FormField = "",
) -> Response:
    typed = {"type": type, "title": title, "requesting_team": requesting_team, "entity": entity}
    values = {k: v.strip() for k, v in typed.items()} | {
        "description": description,
        "priority": priority.strip().upper() or Priority.P3.value,
        "labels": labels,
    }
    try:
        check_lengths(values, INTAKE_LIMITS)
        require_filled(
            values, {"type": "choose a request type", "title": "say in a few words what you need"}
        )
        data = service.TicketInput(
            **{k: values[k] for k in ("type", "title", "description", "priority")},
            requesting_team=values["requesting_team"] or None,
            entity=values["entity"] or None,
            labels=_labels(values["labels"]),
        )
        ticket = service.create(session=session, actor=viewer.actor, data=data)
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        return _intake(request, session, viewer, form_failed(values, exc), status=exc.status)
    message = f"Ticket #{ticket.id} opened. You will find news of it in your inbox."
    return redirect_after_post(request, f"/tickets/{ticket.id}", message, viewer)


# -- one ticket --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Moment:
    """One entry of a ticket's timeline: a status change, a comment or a work log."""

    at: dt.datetime
    kind: str  # status | comment | work
    who: str
    item: StatusChange | Comment | WorkLog


# In the order things were recorded (a work log shows when the work was done, too); a move's
# note follows the move.
MOMENT_ORDER = {"status": 0, "comment": 1, "work": 2}


def _zone(time_zone: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _timeline(
    session: Session, ticket: Ticket, viewer: Viewer
) -> tuple[list[Moment], dict[int, User]]:
    """The ticket's story as the viewer may read it: internal notes for SREs and admins only."""
    changes, comments, logs = service.history(
        session=session,
        ticket_id=ticket.id,
        include_internal=service.may_see_internal(viewer.actor),
    )
    named = people.users_by_id(
        session=session,
        ids=[ticket.requester_user_id, ticket.assignee_user_id]
        + [c.by_user_id for c in changes]
        + [c.author_user_id for c in comments]
        + [w.user_id for w in logs],
    )

    def who(user_id: int | None) -> str:
        return queues.person_name(named[user_id]) if user_id in named else "Lamplighter"

    moments = (
        [Moment(c.at, "status", who(c.by_user_id), c) for c in changes]
        + [Moment(c.created_at, "comment", who(c.author_user_id), c) for c in comments]
        + [Moment(w.created_at, "work", who(w.user_id), w) for w in logs]
    )
    return sorted(moments, key=lambda m: (m.at, MOMENT_ORDER[m.kind])), named


def _ticket_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    ticket_id: int,
    *,
    forms: Mapping[str, FormState] | None = None,
    status: int = 200,
) -> Response:
    ticket = service.get(session=session, ticket_id=ticket_id)
    row = read_many(session, [ticket])[0]
    types = {t.id: t for t in service.list_types(session=session, include_inactive=True)}
    timeline, named = _timeline(session, ticket, viewer)
    can_work = service.may_work_on(session, viewer.actor, ticket)
    is_requester = ticket.requester_user_id == viewer.user.id
    local_now = utcnow().astimezone(_zone(viewer.user.time_zone)).strftime("%Y-%m-%dT%H:%M")
    assignment = {"assignee": row.assignee or "", "team": row.team or "", "priority": row.priority}
    defaults = {
        "move": FormState({"status": "", "resolution": Resolution.MANUAL.value, "note": ""}),
        "assign": FormState(assignment | {"labels": ", ".join(row.labels)}),
        "comment": FormState({"body": "", "visibility": "public"}),
        "work": FormState({"minutes": "", "logged_at": local_now, "work_note": ""}),
    }
    match = ENTITY_REF_RE.match(row.entity or "")
    context = {
        "ticket": row,
        "raw": ticket,
        "request_type": types.get(ticket.type_id),
        "timeline": timeline,
        "people": named,
        "may_note": service.may_see_internal(viewer.actor),
        "entity_url": "/catalog/{}/{}/{}".format(*match.groups()) if match else None,
        "next_statuses": [s for s in STATUSES if s in TRANSITIONS[Status(ticket.status)]],
        "statuses": STATUS_NAMES,
        "resolution_choices": RESOLUTION_CHOICES,
        "priority_choices": PRIORITY_CHOICES,
        "team_choices": [choice for group in _teams(session, viewer) for choice in group],
        "my_email": viewer.user.email,
        "can_work": can_work,
        "can_comment": can_work or (is_requester and viewer.actor.role != Role.VIEWER.value),
        "forms": defaults | dict(forms or {}),
        "markdown": markdown,
        "duration": format_minutes,
        "age": age,
    }
    return render(request, "tickets/ticket.html", context, viewer=viewer, status=status)


def _failed(
    request: Request,
    session: Session,
    viewer: Viewer,
    ticket_id: int,
    form: str,
    values: dict[str, str],
    exc: LamplighterError,
) -> Response:
    """Show the ticket again with the form's errors; refusals get the plain error page."""
    session.rollback()
    if exc.status in {401, 403, 404}:
        raise exc
    state = form_failed(values, exc, conflict_field="status" if form == "move" else None)
    return _ticket_page(request, session, viewer, ticket_id, forms={form: state}, status=exc.status)


@router.get("/tickets/{ticket_id:int}")
def ticket_page(
    request: Request, session: SessionDep, viewer: ViewerDep, ticket_id: Id
) -> Response:
    return _ticket_page(request, session, viewer, ticket_id)


@router.post("/tickets/{ticket_id:int}/transitions")
def move_ticket(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    ticket_id: Id,
    status: FormField = "",
    resolution: FormField = "",
    note: FormField = "",
) -> Response:
    values = {"status": status.strip(), "resolution": resolution.strip(), "note": note}
    try:
        check_lengths(values, {"note": 50_000})
        require_filled(values, {"status": "choose the status to move the ticket to"})
        done = values["status"] == Status.DONE.value
        service.transition(
            session=session,
            actor=viewer.actor,
            ticket_id=ticket_id,
            to_status=values["status"],
            resolution=(values["resolution"] or None) if done else None,
            note=values["note"].strip() or None,
        )
        session.commit()
    except LamplighterError as exc:
        return _failed(request, session, viewer, ticket_id, "move", values, exc)
    message = f"Ticket #{ticket_id} is now {STATUS_NAMES[values['status']].lower()}."
    return redirect_after_post(request, f"/tickets/{ticket_id}", message, viewer)


@router.post("/tickets/{ticket_id:int}/update")
def update_ticket(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    ticket_id: Id,
    assignee: OptionalField = None,
    team: OptionalField = None,
    priority: OptionalField = None,
    labels: OptionalField = None,
) -> Response:
    """Assignee, assigned team, priority and labels; a field the form did not send stays."""
    sent = {"assignee": assignee, "team": team, "priority": priority, "labels": labels}
    values = {k: (v or "").strip() for k, v in sent.items()}
    try:
        check_lengths(values, {"assignee": 320, "team": 63, "priority": 2, "labels": 1_100})
        changes: dict[str, Any] = {
            k: values[k] or None for k in ("assignee", "team") if sent[k] is not None
        }
        if values["priority"]:
            changes["priority"] = values["priority"].upper()
        if labels is not None:
            changes["labels"] = _labels(values["labels"])
        service.update(session=session, actor=viewer.actor, ticket_id=ticket_id, changes=changes)
        session.commit()
    except LamplighterError as exc:
        return _failed(request, session, viewer, ticket_id, "assign", values, exc)
    return redirect_after_post(
        request, f"/tickets/{ticket_id}", f"Ticket #{ticket_id} updated.", viewer
    )


@router.post("/tickets/{ticket_id:int}/comments")
def comment_ticket(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    ticket_id: Id,
    body: FormField = "",
    visibility: FormField = "public",
) -> Response:
    """A public reply, or (SREs and admins) an internal note the requester never sees."""
    values = {"body": body, "visibility": visibility.strip().lower() or "public"}
    try:
        check_lengths(values, {"body": 50_000, "visibility": 10})
        if values["visibility"] not in {"public", "internal"}:
            raise ValidationFailed.one(
                "body.visibility", "choose a public reply or an internal note"
            )
        internal = values["visibility"] == "internal"
        service.add_comment(
            session=session, actor=viewer.actor, ticket_id=ticket_id, body=body, internal=internal
        )
        session.commit()
    except LamplighterError as exc:
        return _failed(request, session, viewer, ticket_id, "comment", values, exc)
    message = "Your internal note was added." if internal else "Your comment was added."
    return redirect_after_post(request, f"/tickets/{ticket_id}#timeline", message, viewer)


def _utc_from_local(text: str, time_zone: str) -> dt.datetime | None:
    """A date and time typed in the viewer's time zone (datetime-local), as UTC."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
        return (when if when.tzinfo else when.replace(tzinfo=_zone(time_zone))).astimezone(dt.UTC)
    except (ValueError, OverflowError) as exc:
        message = "enter a date and time like 2026-11-22 14:30"
        raise ValidationFailed.one("body.logged_at", message) from exc


@router.post("/tickets/{ticket_id:int}/work-logs")
def log_work(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    ticket_id: Id,
    minutes: FormField = "",
    logged_at: FormField = "",
    work_note: FormField = "",
) -> Response:
    values = {"minutes": minutes.strip(), "logged_at": logged_at.strip(), "work_note": work_note}
    try:
        check_lengths(values, {"minutes": 10, "work_note": 2_000})
        if not values["minutes"].isdecimal():
            raise ValidationFailed.one("body.minutes", "enter whole minutes, e.g. 25")
        entry = service.log_work(
            session=session,
            actor=viewer.actor,
            ticket_id=ticket_id,
            minutes=int(values["minutes"]),
            logged_at=_utc_from_local(values["logged_at"], viewer.user.time_zone),
            note=values["work_note"].strip(),
        )
        session.commit()
    except LamplighterError as exc:
        return _failed(request, session, viewer, ticket_id, "work", values, exc)
    message = f"{format_minutes(entry.minutes)} of work logged on ticket #{ticket_id}."
    return redirect_after_post(request, f"/tickets/{ticket_id}#timeline", message, viewer)
