"""The frontline pages: alert groups (the list; one group with its alerts, timeline, delivery
log, runbook, the team's note and the responders' buttons), the signed one-click links sent in
notifications, and the weekly alert report. Integrations, silences and maintenance windows are
in ``oncall.alert_setup_pages``, which shares this module's form helpers.

Thin adapters like the SLO pages: parse the form, call one alerting or on-call service
function, commit once, redirect (303) with a message. Everything works without JavaScript.
Who may act on a group is the alerting domain's rule (``groups.may_act``), which lets in the
people on-call notified about it (``groups.responders``).

``/alerts/act/{token}`` needs no sign-in and no CSRF token: the signed token is the
authorization, for one action on one group as one person (``oncall.links``). Its GET only
asks (mail scanners open links); its POST acts. The token is a secret: the request log names
the route's template, and the pages show it nowhere but in the form's action.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import pydantic
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from lamplighter.alerting import groups, silences
from lamplighter.alerting.models import AlertGroup, Silence
from lamplighter.alerting.schemas import SilenceIn, TimelineEntry
from lamplighter.catalog import service as catalog
from lamplighter.core import identity, people, timefmt
from lamplighter.core.authz import can_write_owned
from lamplighter.core.db import utcnow
from lamplighter.core.deps import SessionDep, SettingsDep
from lamplighter.core.errors import (
    FieldError,
    Forbidden,
    LamplighterError,
    NotFound,
    ValidationFailed,
)
from lamplighter.core.models import Team, User
from lamplighter.core.pagination import decode_cursor, encode_cursor
from lamplighter.core.settings import Settings
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
    page_links,
    redirect_after_post,
    render,
)
from lamplighter.oncall import links, notify, report
from lamplighter.oncall.models import Delivery

router = APIRouter(include_in_schema=False, route_class=PageRoute)
M = TypeVar("M", bound=pydantic.BaseModel)

PAGE_SIZE = 50
STATUSES = ("open", "triggered", "acknowledged", "resolved")
KINDS = (
    ("alertmanager", "Prometheus Alertmanager (webhook)"),
    ("pagerduty", "PagerDuty Events API v2 (routing key)"),
    ("generic", "Generic webhook (mapped with expressions)"),
    ("heartbeat", "Heartbeat (alerts when pings stop)"),
)
# Labels that name the service an alert is about, in the order a silence prefers them.
ENTITY_LABELS = ("service", "app", "job", "component")
DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*$", re.I)
INSIDE_FIELD = re.compile(r"^body\.(?P<field>\w+)(?P<rest>[.\[].*)$")
# The link's page carries a secret in its address: no referrer, no search engine.
LINK_HEADERS = {"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}
LINK_VERBS = {"ack": ("Acknowledge", "Acknowledged"), "resolve": ("Resolve", "Resolved")}
CHANNELS = {"email": "Email", "slack": "Slack", "webhook": "Webhook", "inbox": "Inbox"}


# -- words and small parsers ------------------------------------------------------------------
def entity_url(ref: str | None) -> str | None:
    """The catalog page of ``kind:namespace/name``."""
    kind, _, rest = (ref or "").partition(":")
    namespace, _, name = rest.partition("/")
    if not (kind and namespace and name):
        return None
    return "/catalog/" + "/".join(quote(part, safe="") for part in (kind, namespace, name))


def web_link(url: str | None) -> str | None:
    """The URL when a browser may follow it: senders write runbook links, and a ``javascript:``
    one must never become a link."""
    return url if url and urlsplit(url).scheme in ("http", "https") else None


def age_text(since: dt.datetime, now: dt.datetime) -> str:
    return f"{timefmt.span(now - since)} ago"


def duration_of(text: str, field: str) -> dt.timedelta:
    """``90m``, ``2h``, ``1d 12h``: a length of time a silence lasts."""
    found = DURATION.match(text or "")
    if not text.strip() or found is None:
        raise ValidationFailed.one(f"body.{field}", "write a length such as 30m, 2h or 1d")
    days, hours, minutes = (int(part or 0) for part in found.groups())
    length = dt.timedelta(days=days, hours=hours, minutes=minutes)
    if length < dt.timedelta(minutes=1):
        raise ValidationFailed.one(f"body.{field}", "at least one minute")
    return length


def silence_matchers(group: AlertGroup, entity_ref: str | None) -> str:
    """Matchers that catch this group's alerts again: its alertname and the label naming its
    entity, one per line."""
    labels = group.labels or {}
    entity_name = (entity_ref or "").rpartition("/")[2]
    lines = []
    if labels.get("alertname"):
        lines.append(("alertname", labels["alertname"]))
    named = [k for k in ENTITY_LABELS if entity_name and labels.get(k) == entity_name]
    if named:
        lines.append((named[0], entity_name))
    return "\n".join(f"{name}={_quoted(value)}" for name, value in lines)


def _quoted(value: str) -> str:
    """A matcher's value in quotes, as ``matchers.parse`` reads it back."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def validated(model: type[M], data: dict[str, Any], what: str) -> M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = [
            FieldError(
                "body." + ".".join(str(part) for part in error.get("loc", ())[:1]),
                str(error.get("msg", "invalid")).removeprefix("Value error, "),
            )
            for error in exc.errors()
        ]
        raise ValidationFailed(f"the {what} is not valid", errors=errors) from exc


def form_of(
    values: dict[str, str], exc: LamplighterError, aliases: dict[str, str] | None = None
) -> FormState:
    """The error next to its field; an error inside a field (one line of the matchers,
    ``body.matchers[2]``; a key of the mapping, ``body.mapping.summary``) next to that field,
    naming the line or key. Refusals (403) and missing pages stay errors."""
    if exc.status in (401, 403) or (isinstance(exc, NotFound) and not exc.errors):
        raise exc
    errors = []
    for error in exc.errors:
        inside = INSIDE_FIELD.match(error.field)
        if inside and inside["field"] in values:
            line = re.fullmatch(r"\[(\d+)\]", inside["rest"])
            where = f"line {int(line[1]) + 1}" if line else inside["rest"].lstrip(".")
            error = FieldError(f"body.{inside['field']}", f"{where}: {error.reason}")
        errors.append(error)
    return form_failed(values, type(exc)(exc.detail, errors=errors), aliases=aliases)


def team_choices(session: Session) -> list[tuple[str, str]]:
    return [
        (t.slug, t.name) for t in identity.list_teams(session=session, after_id=None, limit=500)
    ]


def own_team(session: Session, viewer: Viewer) -> str:
    """The viewer's team, when they have exactly one: what the forms start with."""
    if len(viewer.actor.team_ids) != 1:
        return ""
    team = people.find_team(session=session, team_id=next(iter(viewer.actor.team_ids)))
    return team.slug if team else ""


def filters(
    session: Session, form: FormState, *, entity: bool = True
) -> tuple[int | None, int | None]:
    """The team and entity a list is filtered by; a wrong one is explained next to its field."""
    team_id = entity_id = None
    if form.values.get("team"):
        try:
            team_id = identity.get_team(session=session, slug=form.values["team"]).id
        except NotFound as exc:
            form.errors["team"] = exc.detail
    if entity and form.values.get("entity"):
        try:
            ref = form.values["entity"]
            entity_id = catalog.get_by_ref(session=session, ref=ref, field="query.entity").id
        except (NotFound, ValidationFailed) as exc:
            form.errors["entity"] = exc.errors[0].reason if exc.errors else exc.detail
    return team_id, entity_id


# -- the alert groups -------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupRow:
    group: AlertGroup
    entity: str | None
    team: Team | None


def _cursor(cursor: str, default_phase: str) -> tuple[str, int | None]:
    """A list cursor: ``o…`` continues among the open groups, ``r…`` among the rest."""
    if not cursor:
        return default_phase, None
    if cursor[0] not in "or":
        raise ValidationFailed.one("query.cursor", "not a cursor this server issued")
    return cursor[0], decode_cursor(cursor[1:]) if cursor[1:] else None


def groups_page(
    session: Session, *, status: str, team_id: int | None, entity_id: int | None, cursor: str
) -> tuple[list[AlertGroup], str | None]:
    """Open groups first, newest first, then the resolved ones (or one status, newest first)."""
    phase, position = _cursor(cursor, "r" if status else "o")

    def fetch(which: str, before: int | None, limit: int) -> list[AlertGroup]:
        return groups.list_(
            session, status=which, team_id=team_id, entity_id=entity_id, before=before, limit=limit
        )

    found: list[AlertGroup] = []
    if phase == "o":
        found = fetch("open", position, PAGE_SIZE + 1)
        if len(found) > PAGE_SIZE:
            return found[:PAGE_SIZE], "o" + encode_cursor(found[PAGE_SIZE - 1].id)
        position = None
    rest = fetch(status or "resolved", position, PAGE_SIZE + 1 - len(found))
    page = [*found, *rest][: PAGE_SIZE + 1]
    if len(page) <= PAGE_SIZE:
        return page, None
    shown_rest = page[len(found) : PAGE_SIZE]
    return page[:PAGE_SIZE], "r" + (encode_cursor(shown_rest[-1].id) if shown_rest else "")


def _group_rows(session: Session, found: Sequence[AlertGroup]) -> list[GroupRow]:
    teams = people.teams_by_id(session=session, ids=[g.team_id for g in found])
    return [
        GroupRow(g, groups.entity_ref(session, g.entity_id), teams.get(g.team_id)) for g in found
    ]


def helpers() -> dict[str, Any]:
    return {"entity_url": entity_url, "age_text": age_text, "web_link": web_link}


@router.get("/alerts")
def alert_list(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    status: QueryText = "",
    team: QueryText = "",
    entity: QueryText = "",
    cursor: QueryText = "",
) -> Response:
    """Alert groups: the open ones first, then the recent; filtered by status, team, entity."""
    values = {"status": status.strip(), "team": team.strip(), "entity": entity.strip()}
    form = FormState(values)
    team_id, entity_id = filters(session, form)
    if values["status"] and values["status"] not in STATUSES:
        form.errors["status"] = f"choose one of {', '.join(STATUSES)}"
    rows: list[GroupRow] = []
    next_cursor = None
    if not form.errors:
        found, next_cursor = groups_page(
            session, status=values["status"], team_id=team_id, entity_id=entity_id, cursor=cursor
        )
        rows = _group_rows(session, found)
    context = {
        **helpers(),
        "form": form,
        "rows": rows,
        "filtered": any(values.values()),
        "teams": team_choices(session),
        "statuses": [(s, s.capitalize()) for s in STATUSES],
        **page_links(request, next_cursor, 1 if cursor else None),
    }
    code = 422 if form.errors else 200
    return render(request, "oncall/alerts_list.html", context, viewer=viewer, status=code)


@dataclass(frozen=True)
class Moment:
    """One line of a group's history: a timeline entry or a delivery attempt."""

    at: dt.datetime
    what: str
    who: User | None
    detail: str
    delivery: Delivery | None = None


def _tier_words(detail: dict[str, Any]) -> str:
    words = []
    if detail.get("tier"):
        name = f" ({detail['tier_name']})" if detail.get("tier_name") else ""
        words.append(f"tier {detail['tier']}{name}")
    if detail.get("round"):
        words.append(f"round {detail['round']}")
    if detail.get("why"):
        words.append(str(detail["why"]))
    return ", ".join(words)


def _entry_words(entry: TimelineEntry) -> tuple[str, str]:
    detail = entry.detail or {}
    by = detail.get("by") or detail.get("via")
    words: dict[str, tuple[str, str]] = {
        "opened": ("Opened", f"{detail.get('alerts', 1)} alert(s): {detail.get('summary', '')}"),
        "tier": ("Escalation started", _tier_words(detail)),
        "escalated": (
            "Escalated by hand" if entry.actor_user_id else "Escalated",
            _tier_words(detail),
        ),
        "notified": ("Notified", _tier_words(detail)),
        "nobody": ("Nobody to notify", _tier_words(detail)),
        "acknowledged": (
            "Acknowledged",
            f"by the {by}" if by == "sender" else f"via {by or 'the page'}",
        ),
        "resolved": ("Resolved", f"by the {by}" if by == "sender" else f"via {by or 'the page'}"),
        "reassigned": ("Reassigned", f"to {detail.get('to', 'someone else')}"),
    }
    return words.get(entry.what, (entry.what.capitalize(), ""))


def moments_of(
    timeline: Sequence[TimelineEntry], deliveries: Sequence[Delivery], users: dict[int, User]
) -> list[Moment]:
    """The timeline and the delivery log in one history, oldest first."""
    found = []
    for entry in timeline:
        what, detail = _entry_words(entry)
        found.append(Moment(entry.at, what, users.get(entry.actor_user_id or 0), detail))
    for d in deliveries:
        channel = CHANNELS.get(d.channel, d.channel)
        detail = f"attempt {d.attempt}, tier {d.tier + 1}, round {d.round + 1}"
        found.append(
            Moment(
                d.at,
                f"{channel}: {d.status}",
                users.get(d.user_id),
                f"{detail}: {d.error}" if d.error else detail,
                d,
            )
        )
    return sorted(found, key=lambda m: m.at)  # stable: an entry before its deliveries


def _group_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    group_id: int,
    *,
    forms: dict[str, FormState] | None = None,
    action_error: str | None = None,
    status: int = 200,
) -> Response:
    group = groups.get(session, group_id)
    view = groups.detail(session, group)
    responders = groups.responders(session, group_id)
    deliveries = report.deliveries_of(session, group_id)
    users = people.users_by_id(
        session=session,
        ids=[
            *(e.actor_user_id for e in view.timeline),
            *(d.user_id for d in deliveries),
            group.acknowledged_by_user_id,
            group.resolved_by_user_id,
            group.assignee_user_id,
        ],
    )
    team = people.find_team(session=session, team_id=group.team_id)
    may_act = viewer.actor.role != "viewer" and groups.may_act(viewer.actor, group, responders)
    blank = {
        "note": FormState({"note": view.note or ""}),
        "reassign": FormState({"user": ""}),
        "silence": FormState(
            {
                "matchers": silence_matchers(group, view.entity),
                "ends_in": "2h",
                "reason": "",
            }
        ),
    }
    context = {
        **helpers(),
        "group": group,
        "view": view,
        "team": team,
        "runbook": notify.runbook_of(session, group),
        "users": users,
        "moments": moments_of(view.timeline, deliveries, users),
        "deliveries_cut": len(deliveries) >= report.DELIVERIES_SHOWN,
        "may_act": may_act,
        "may_note": can_write_owned(viewer.actor, group.team_id),
        "forms": {**blank, **(forms or {})},
        "action_error": action_error,
    }
    return render(request, "oncall/alerts_group.html", context, viewer=viewer, status=status)


@router.get("/alerts/groups/{group_id:int}")
def group_page(request: Request, session: SessionDep, viewer: ViewerDep, group_id: int) -> Response:
    """One alert group: what fired, its runbook and note, who was told when and how."""
    return _group_page(request, session, viewer, group_id)


GroupAction = Callable[..., AlertGroup]


def _act_on_group(
    request: Request,
    session: Session,
    viewer: Viewer,
    group_id: int,
    action: GroupAction,
    message: str,
    **arguments: Any,
) -> Response:
    try:
        action(
            session=session,
            actor=viewer.actor,
            group_id=group_id,
            also_allowed=groups.responders(session, group_id),
            **arguments,
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        if exc.status in (401, 403, 404):
            raise
        if exc.errors:  # a wrong email for the reassignment
            form = form_of({"user": arguments.get("to_email", "")}, exc)
            forms = {"reassign": form}
            return _group_page(request, session, viewer, group_id, forms=forms, status=exc.status)
        return _group_page(
            request, session, viewer, group_id, action_error=exc.detail, status=exc.status
        )
    return redirect_after_post(request, f"/alerts/groups/{group_id}", message, viewer)


@router.post("/alerts/groups/{group_id:int}/acknowledge")
def acknowledge(
    request: Request, session: SessionDep, viewer: WriterDep, group_id: int
) -> Response:
    message = "Acknowledged: the escalation has stopped."
    return _act_on_group(
        request, session, viewer, group_id, groups.acknowledge, message, via="page"
    )


@router.post("/alerts/groups/{group_id:int}/resolve")
def resolve(request: Request, session: SessionDep, viewer: WriterDep, group_id: int) -> Response:
    message = "Resolved. The next alert of this kind opens a new group."
    return _act_on_group(request, session, viewer, group_id, groups.resolve, message, via="page")


@router.post("/alerts/groups/{group_id:int}/escalate")
def escalate(request: Request, session: SessionDep, viewer: WriterDep, group_id: int) -> Response:
    message = "Escalated: the next tier is being notified now."
    return _act_on_group(request, session, viewer, group_id, groups.escalate, message)


@router.post("/alerts/groups/{group_id:int}/reassign")
def reassign(
    request: Request, session: SessionDep, viewer: WriterDep, group_id: int, user: FormField = ""
) -> Response:
    message = f"Reassigned to {user.strip()}; they are being notified."
    return _act_on_group(
        request, session, viewer, group_id, groups.reassign, message, to_email=user[:320]
    )


@router.post("/alerts/groups/{group_id:int}/note")
def save_note(
    request: Request, session: SessionDep, viewer: WriterDep, group_id: int, note: FormField = ""
) -> Response:
    """The team's "how to handle this" on the group's alert kind."""
    values = {"note": note}
    try:
        check_lengths(values, {"note": 20_000})
        if not note.strip():
            raise ValidationFailed.one("body.note", "write how to handle this alert")
        saved = groups.set_note(session=session, actor=viewer.actor, group_id=group_id, body=note)
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = form_of(values, exc, {"body": "note"})
        return _group_page(
            request, session, viewer, group_id, forms={"note": form}, status=exc.status
        )
    message = f"Saved the note on {saved.kind}: it is shown whenever this alert fires."
    return redirect_after_post(request, f"/alerts/groups/{group_id}", message, viewer)


def create_silence_from_form(
    session: Session, viewer: Viewer, *, team: str | None, values: dict[str, str]
) -> Silence:
    check_lengths(values, {"matchers": 20_000, "ends_in": 20, "reason": 2000})
    lines = [line.strip() for line in values["matchers"].splitlines() if line.strip()]
    ends_at = utcnow() + duration_of(values["ends_in"], "ends_in")
    data = {"team": team or None, "matchers": lines, "ends_at": ends_at, "reason": values["reason"]}
    return silences.create(
        session=session, actor=viewer.actor, data=validated(SilenceIn, data, "silence")
    )


@router.post("/alerts/groups/{group_id:int}/silence")
def silence_group(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    group_id: int,
    matchers: FormField = "",
    ends_in: FormField = "",
    reason: FormField = "",
) -> Response:
    """Silence alerts like this group's, for the group's team."""
    values = {"matchers": matchers, "ends_in": ends_in, "reason": reason}
    group = groups.get(session, group_id)
    team = people.find_team(session=session, team_id=group.team_id)
    try:
        silence = create_silence_from_form(
            session, viewer, team=team.slug if team else None, values=values
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = form_of(values, exc, {"ends_at": "ends_in"})
        forms = {"silence": form}
        return _group_page(request, session, viewer, group_id, forms=forms, status=exc.status)
    until = timefmt.readable(silence.ends_at, viewer.user.time_zone)
    message = f"Silenced alerts matching {', '.join(silence.matchers)} until {until}."
    return redirect_after_post(request, f"/alerts/groups/{group_id}", message, viewer)


# -- the one-click links ----------------------------------------------------------------------
def _link_page(request: Request, context: dict[str, Any], *, status: int = 200) -> Response:
    return render(request, "oncall/act.html", context, status=status, headers=LINK_HEADERS)


def _link_problem(request: Request, token: str, exc: LamplighterError) -> Response:
    """An expired, altered or refused link, explained (never a 500, never the token)."""
    group_id = None
    if isinstance(exc, links.LinkExpired):  # authentic: its group id can be trusted
        group_id = int(token.partition(".")[0])
    context = {
        "problem": {"title": exc.title, "detail": exc.detail},
        "status_code": exc.status,
        "group_id": group_id,
    }
    return _link_page(request, context, status=exc.status)


def _link_claim(session: Session, settings: Settings, token: str) -> tuple[links.LinkClaim, User]:
    claim = links.verify(settings, token)
    person = people.find_user(session=session, user_id=claim.user_id)
    if person is None or not person.is_active:
        raise Forbidden("the person this link was sent to can no longer act in Lamplighter")
    return claim, person


def _link_context(session: Session, claim: links.LinkClaim, person: User) -> dict[str, Any]:
    """What the link's page says about the group: its summary, entity and state."""
    group = groups.get(session, claim.group_id)
    entity = groups.entity_ref(session, group.entity_id)
    verb, done = LINK_VERBS[claim.action]
    finished = group.status == ("acknowledged" if claim.action == "ack" else "resolved")
    return {
        "group": group,
        "entity": entity.rpartition("/")[2] if entity else None,
        "verb": verb,
        "done_verb": done,
        "person": person,
        "already": finished or group.status == "resolved",
        "expires_at": claim.expires_at,
        "tz": person.time_zone,
    }


@router.get("/alerts/act/{token}")
def link_form(request: Request, session: SessionDep, settings: SettingsDep, token: str) -> Response:
    """What the link will do, with one button; nothing changes until it is pressed."""
    try:
        claim, person = _link_claim(session, settings, token)
        context = _link_context(session, claim, person)
    except LamplighterError as exc:
        return _link_problem(request, token, exc)
    context["action"] = f"/alerts/act/{token}"
    return _link_page(request, context)


@router.post("/alerts/act/{token}")
def link_act(request: Request, session: SessionDep, settings: SettingsDep, token: str) -> Response:
    """Acknowledge or resolve as the person the link was sent to."""
    try:
        claim, person = _link_claim(session, settings, token)
        before = _link_context(session, claim, person)
        actor = people.actor_for_user(session=session, user_id=person.id)
        if actor is None:  # deleted between the two reads
            raise Forbidden("the person this link was sent to can no longer act in Lamplighter")
        action = groups.acknowledge if claim.action == "ack" else groups.resolve
        action(
            session=session,
            actor=actor,
            group_id=claim.group_id,
            also_allowed={claim.user_id},
            via="link",
        )
        session.commit()
        context = _link_context(session, claim, person)
    except LamplighterError as exc:
        session.rollback()
        return _link_problem(request, token, exc)
    context.update(acted=True, was_already=before["already"])
    return _link_page(request, context)


# -- the report -------------------------------------------------------------------------------
def week_range(week: str, time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """An ISO week (``2026-W49``) from Monday 00:00 to the next Monday in ``time_zone``."""
    found = re.fullmatch(r"\s*(\d{4})-?W(\d{1,2})\s*", week, re.I)
    try:
        if found is None or not 1970 <= int(found[1]) <= 2999:
            raise ValueError
        monday = dt.date.fromisocalendar(int(found[1]), int(found[2]), 1)
    except ValueError:
        raise ValidationFailed.one("query.week", "choose a week such as 2026-W49") from None
    start = dt.datetime.combine(monday, dt.time(0), tzinfo=timefmt.zone_of(time_zone))
    return start, start + dt.timedelta(days=7)


def _week_of(at: dt.datetime, time_zone: str) -> str:
    year, week, _ = at.astimezone(timefmt.zone_of(time_zone)).isocalendar()
    return f"{year}-W{week:02d}"


@router.get("/alerts/report")
def report_page(
    request: Request, session: SessionDep, viewer: ViewerDep, week: QueryText = ""
) -> Response:
    """The alert report for a week (the last 7 days until one is chosen), and its CSV."""
    tz = viewer.user.time_zone
    form = FormState({"week": week.strip()})
    start = end = None
    if form.values["week"]:
        try:
            start, end = week_range(form.values["week"], tz)
        except ValidationFailed as exc:
            form.errors["week"] = exc.errors[0].reason
    built = None if form.errors else report.build(session=session, start=start, end=end)
    context: dict[str, Any] = {"form": form, "report": built}
    if built is not None:
        shown = built.start if start else built.end
        monday, _ = week_range(_week_of(shown, tz), tz)
        range_query = {"start": built.start.isoformat(), "end": built.end.isoformat()}
        context |= {
            "csv_url": "/api/v1/oncall/report.csv?" + urlencode(range_query),
            "previous_week": _week_of(monday - dt.timedelta(days=7), tz),
            "next_week": _week_of(monday + dt.timedelta(days=7), tz) if start else None,
            "this_week": _week_of(monday, tz) if start else None,
        }
    code = 422 if form.errors else 200
    return render(request, "oncall/report.html", context, viewer=viewer, status=code)
