"""SLO pages: the list sorted by the budget left, one SLO with its burn-down chart, burn-rate
table and error budget policy, the form that defines or changes one, and the owners' buttons
(evaluate now, rotate the ingest key, delete, grant a release exception).

Thin adapters like the catalog pages: parse the form, call one service function, commit once,
redirect (303) with a message. Everything works without JavaScript. The SLO's figures are those
of its last evaluation (``service.status_of``); the pages compute nothing but words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity
from lamplighter.core import identity, people, timefmt
from lamplighter.core.authz import can_write_owned, require_owned_write, require_writer
from lamplighter.core.db import utcnow
from lamplighter.core.deps import SessionDep, SettingsDep
from lamplighter.core.errors import FieldError, LamplighterError, NotFound, ValidationFailed
from lamplighter.core.models import Team
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
    take_flash,
)
from lamplighter.slo import charts, engine, evaluate, forms, jobs, service
from lamplighter.slo.models import Slo

router = APIRouter(include_in_schema=False, route_class=PageRoute)

STATUSES = ("exhausted", "burning", "warning", "healthy", "no data")
STATUS_BADGES = {
    "healthy": "badge-ok",
    "warning": "badge-lead",
    "burning": "badge-danger",
    "exhausted": "badge-danger",
}
SOURCES = (
    ("events", "Built-in events (push counts to Lamplighter)"),
    ("probe", "HTTP probe run by Lamplighter"),
    ("prometheus", "Prometheus queries"),
)
WINDOW_CHOICES = (
    ("7d", "7 days"),
    ("28d", "28 days"),
    ("30d", "30 days"),
    ("calendar-week", "calendar week"),
    ("calendar-month", "calendar month"),
)
ENTITY_KINDS = "service,api"
TIMES = "\u00d7"  # the multiplication sign
PROBES_SHOWN = 20
HISTORY_SHOWN = 31


# -- words ----------------------------------------------------------------------------------------
def percent_text(ratio: float | None, digits: int = 3) -> str:
    """A ratio as a per cent without trailing zeros: 0.99912 → "99.912 %"; None → "—"."""
    if ratio is None:
        return "—"
    text = f"{ratio * 100:.{digits}f}".rstrip("0").rstrip(".")
    return f"{text} %"


def budget_left_text(remaining: float | None) -> str:
    """The budget left in a few characters: "12 %", "0.4 %", "none (-20 %)"."""
    if remaining is None:
        return "—"
    value = remaining * 100
    if value <= 0:
        return "none" if value == 0 else f"none ({value:.0f} %)"
    return f"{value:.0f} %" if value >= 10 else f"{value:.1f} %"


def budget_words(slo: Slo) -> str:
    """ "12 % of the budget left: 38,016 of 43,200 bad events spent" (or seconds of bad time)."""
    if slo.budget_remaining is None:
        return "No budget figures yet"
    if slo.budget_remaining <= 0:
        head = "The budget is spent" + (
            f", overspent by {-slo.budget_remaining * 100:.0f} %"
            if slo.budget_remaining < -0.005
            else ""
        )
    else:
        head = f"{budget_left_text(slo.budget_remaining)} of the budget left"
    if slo.budget_total is None or slo.budget_spent is None:
        return head
    if slo.budgeting == "timeslices":
        spent = timefmt.span(dt.timedelta(seconds=slo.budget_spent))
        total = timefmt.span(dt.timedelta(seconds=slo.budget_total))
        return f"{head}: {spent} of {total} of bad time spent"
    return f"{head}: {slo.budget_spent:,.0f} of {slo.budget_total:,.0f} bad events spent"


def rate_text(rate: float | None) -> str:
    """A burn rate as a multiple of the sustainable one: "14.4\u00d7"."""
    if rate is None:
        return "—"
    return f"{rate:.2f}{TIMES}" if rate < 10 else f"{rate:.1f}{TIMES}"


def exhaustion_words(slo: Slo, now: dt.datetime, time_zone: str) -> str:
    """When the budget runs out at the burn rate of the last six hours, in words."""
    if slo.budget_remaining is None:
        return "Not known until events arrive"
    if slo.budget_remaining <= 0:
        return "Already spent"
    if slo.exhaustion_at is None:
        return "Not within the window at the current burn rate"
    at = slo.exhaustion_at if slo.exhaustion_at.tzinfo else slo.exhaustion_at.replace(tzinfo=dt.UTC)
    if at <= now:
        return f"Any moment now ({timefmt.readable(at, time_zone)})"
    return f"In {timefmt.span(at - now)}, {timefmt.readable(at, time_zone)}"


def window_text(slo: Slo) -> str:
    name = service.window_name(slo)
    label = dict(WINDOW_CHOICES).get(name, name)
    return f"rolling {label}" if slo.window_kind == "rolling" else label


def sli_summary(slo: Slo) -> list[tuple[str, str, bool]]:
    """(label, text, is_code) lines describing what the SLO measures."""
    sli = slo.sli or {}
    lines: list[tuple[str, str, bool]]
    kind = sli.get("kind", "ratio")
    if slo.source == "probe":
        probe = slo.probe or {}
        lines = [
            ("Probes", str(probe.get("url") or "the entity's health link"), True),
            (
                "Every",
                f"{probe.get('interval_s', 60)} s, timeout {probe.get('timeout_s', 10):g} s, "
                f"expecting HTTP {probe.get('expected_status', 200)}",
                False,
            ),
        ]
        if probe.get("latency_threshold_ms"):
            lines.append(("Slower than", f"{probe['latency_threshold_ms']:g} ms fails", False))
        return lines
    if slo.source == "events":
        what = (
            f"requests faster than {sli['threshold_s']:g} s, pushed as good events"
            if kind == "latency" and sli.get("threshold_s")
            else "good and total events pushed to Lamplighter"
        )
        return [("SLI", what, False)]
    lines = [("SLI kind", kind, False)]
    for key, label in (
        ("good_query", "Good events"),
        ("bad_query", "Bad events"),
        ("total_query", "Total events"),
        ("error_ratio_query", "Error ratio"),
        ("query", "Measurement"),
        ("metric", "Histogram"),
        ("selector", "Selector"),
    ):
        if sli.get(key):
            lines.append((label, str(sli[key]), True))
    if kind == "latency" and sli.get("threshold_s"):
        lines.append(("Faster than", f"{sli['threshold_s']:g} s", False))
    if kind == "threshold":
        lines.append(("Good when", f"{sli.get('op')} {sli.get('value')}", False))
    return lines


# -- the list ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    slo: Slo
    entity: Entity
    team: Team | None


def rows_of(session: Session, slos: Sequence[Slo]) -> list[Row]:
    entities = [service.entity_of(session, slo) for slo in slos]
    teams = people.teams_by_id(session=session, ids=[e.owner_team_id for e in entities])
    return [
        Row(slo, entity, teams.get(entity.owner_team_id or 0))
        for slo, entity in zip(slos, entities, strict=True)
    ]


def entity_url(entity: Entity) -> str:
    return f"/catalog/{entity.kind}/{entity.namespace}/{entity.name}"


def _template_helpers() -> dict[str, Any]:
    return {
        "percent_text": percent_text,
        "budget_left_text": budget_left_text,
        "rate_text": rate_text,
        "meter": charts.budget_meter,
        "window_text": window_text,
        "entity_url": entity_url,
        "status_badges": STATUS_BADGES,
    }


@router.get("/slos")
def slo_list(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    team: QueryText = "",
    entity: QueryText = "",
    status: QueryText = "",
    cursor: QueryText = "",
) -> Response:
    """Every SLO, the least budget left first (no data last), filtered by team, entity, status."""
    values = {"team": team.strip(), "entity": entity.strip(), "status": status.strip()}
    form = FormState(values)
    team_id = entity_id = None
    if values["team"]:
        try:
            team_id = identity.get_team(session=session, slug=values["team"]).id
        except NotFound as exc:
            form.errors["team"] = exc.detail
    if values["entity"]:
        try:
            entity_id = catalog.get_by_ref(
                session=session, ref=values["entity"], field="query.entity"
            ).id
        except (NotFound, ValidationFailed) as exc:
            form.errors["entity"] = exc.errors[0].reason if exc.errors else exc.detail
    if values["status"] and values["status"] not in STATUSES:
        form.errors["status"] = f"choose one of {', '.join(STATUSES)}"
    rows: list[Row] = []
    next_cursor = None
    if not form.errors:
        filters = service.ListFilters(
            team_id=team_id, entity_id=entity_id, status=values["status"] or None
        )
        found, next_cursor = service.list_(session=session, filters=filters, cursor=cursor or None)
        rows = rows_of(session, found)
    teams = identity.list_teams(session=session, after_id=None, limit=500)
    context = {
        **_template_helpers(),
        "form": form,
        "rows": rows,
        "filtered": any(values.values()),
        "teams": [(t.slug, t.name) for t in teams],
        "statuses": [(s, s) for s in STATUSES],
        "may_define": viewer.actor.role != "viewer",
        **page_links(request, next_cursor, 1 if cursor else None),
    }
    code = 422 if form.errors else 200
    return render(request, "slo/list.html", context, viewer=viewer, status=code)


def _form_page(
    request: Request,
    viewer: Viewer,
    form: FormState,
    *,
    slo: Slo | None = None,
    status: int = 200,
) -> Response:
    context = {
        "form": form,
        "slo": slo,
        "sources": SOURCES,
        "windows": WINDOW_CHOICES,
        "entity_kinds": ENTITY_KINDS,
    }
    return render(request, "slo/form.html", context, viewer=viewer, status=status)


def _failed(values: dict[str, str], exc: LamplighterError) -> tuple[FormState, int]:
    """The error next to its field, and the status to answer with: an entity not in the
    catalog is a mistake in the form (422), not a missing page."""
    if isinstance(exc, NotFound) and not exc.errors:
        exc = ValidationFailed(exc.detail, errors=[FieldError("body.entity", exc.detail)])
    aliases = {"url": "probe_url", "bad_query": "good_query"}
    return form_failed(values, exc, conflict_field="name", aliases=aliases), exc.status


# A SLI the form cannot show (raw, threshold: from Sloth and OpenSLO files) changes in its file.
FORM_KINDS = frozenset({"ratio", "latency", "probe"})


def editable(slo: Slo) -> bool:
    return (slo.sli or {}).get("kind", "ratio") in FORM_KINDS


@router.get("/slos/new")
def new_slo_form(
    request: Request,
    viewer: ViewerDep,
    entity: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    require_writer(viewer.actor, "define SLOs")
    return _form_page(request, viewer, FormState(forms.blank_values(entity.strip())))


@router.post("/slos")
def create_slo(
    request: Request, session: SessionDep, viewer: WriterDep, values: forms.PostedForm
) -> Response:
    try:
        data, errors = forms.parse_form(values)
        slo, key = service.create(
            session=session, actor=viewer.actor, data=forms.validated(data, errors)
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form, code = _failed(values, exc)
        return _form_page(request, viewer, form, status=code)
    message = f"Defined the SLO {slo.name}; it is measured at the next evaluation."
    secret = {"ingest_key": key} if key else None
    return redirect_after_post(request, f"/slos/{slo.id}", message, viewer, secret)


def _writable(session: Session, viewer: Viewer, slo_id: int) -> tuple[Slo, Entity]:
    slo = service.get(session=session, slo_id=slo_id)
    entity = service.entity_of(session, slo)
    require_owned_write(viewer.actor, entity.owner_team_id, f"the SLOs of {entity.ref}")
    return slo, entity


@router.get("/slos/{slo_id}/edit")
def edit_slo_form(
    request: Request, session: SessionDep, viewer: ViewerDep, slo_id: int
) -> Response:
    slo, entity = _writable(session, viewer, slo_id)
    form = FormState(forms.values_of(slo, entity))
    if not editable(slo):
        form.error = (
            f"This SLO's {slo.sli.get('kind')} SLI is not one the form shows; change it in its "
            "file and apply it with lamplighter slo apply."
        )
    return _form_page(request, viewer, form, slo=slo)


@router.post("/slos/{slo_id}/edit")
def update_slo(
    request: Request, session: SessionDep, viewer: WriterDep, slo_id: int, values: forms.PostedForm
) -> Response:
    slo, entity = _writable(session, viewer, slo_id)
    base = service.input_of(slo, entity.ref)
    try:
        if not editable(slo):
            raise ValidationFailed.one(
                "body.source", "this SLI is not one the form shows; change it in its file"
            )
        data, errors = forms.parse_form(values, base)
        slo, changed = service.update(
            session=session, actor=viewer.actor, slo_id=slo_id, data=forms.validated(data, errors)
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        slo = service.get(session=session, slo_id=slo_id)
        form, code = _failed(values, exc)
        return _form_page(request, viewer, form, slo=slo, status=code)
    message = f"Saved the SLO {slo.name}." if changed else "Nothing changed."
    return redirect_after_post(request, f"/slos/{slo.id}", message, viewer)


# -- one SLO ------------------------------------------------------------------------------------
def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _slo_page(
    request: Request,
    session: Session,
    settings: Any,
    viewer: Viewer,
    slo_id: int,
    *,
    exception_form: FormState | None = None,
    status: int = 200,
) -> Response:
    slo = service.get(session=session, slo_id=slo_id)
    entity = service.entity_of(session, slo)
    team = people.find_team(session=session, team_id=entity.owner_team_id)
    state = service.status_of(session=session, slo=slo)
    now = utcnow()
    tz = viewer.user.time_zone
    points = evaluate.burndown(session, slo, now)
    start, end = engine.window_bounds(service.window_of(slo), now)
    label = f"{slo.name} of {entity.name}"
    chart = charts.burndown_chart(
        points,
        window_start=start,
        window_end=end,
        now=now,
        title=f"Error budget left over the window, {label}",
        description=f"From 100 % at the window's start ({timefmt.readable(start, tz)}); "
        "at 0 % the budget is spent.",
        time_zone=tz,
    )
    history = evaluate.history(session, slo, days=HISTORY_SHOWN)
    release = service.release_policy(session=session, entity_ref=entity.ref, now=now)
    flash = take_flash(request, viewer)
    secret = (flash or {}).get("secret") or {}
    can_write = can_write_owned(viewer.actor, entity.owner_team_id)
    context = {
        **_template_helpers(),
        "slo": slo,
        "entity": entity,
        "team": team,
        "state": state,
        "sli_lines": sli_summary(slo),
        "window": window_text(slo),
        "budget_words": budget_words(slo),
        "exhaustion": exhaustion_words(slo, now, tz),
        "chart": chart,
        "points": [(_aware(at), ratio) for at, ratio in points],
        "history": list(reversed(history)),
        "policy": state["policy"],
        "release": release,
        "exception_until": timefmt.readable(
            dt.datetime.fromisoformat(release.exception["expires_at"]), tz
        )
        if release.exception
        else None,
        "probes": service.latest_probe_results(session=session, slo_id=slo.id, limit=PROBES_SHOWN)
        if slo.source == "probe"
        else [],
        "ingest_url": f"{settings.base_url.rstrip('/')}/api/v1/slos/{slo.id}/events",
        "new_key": secret.get("ingest_key") if can_write else None,
        "can_write": can_write,
        "can_edit": can_write and editable(slo),
        "exception_form": exception_form or FormState({"reason": "", "hours": "24"}),
        "label": label,
    }
    return render(request, "slo/slo.html", context, viewer=viewer, status=status)


@router.get("/slos/{slo_id}")
def slo_page(
    request: Request, session: SessionDep, settings: SettingsDep, viewer: ViewerDep, slo_id: int
) -> Response:
    """One SLO: its figures, the burn-down chart, the alerts, the policy, and its history."""
    return _slo_page(request, session, settings, viewer, slo_id)


@router.post("/slos/{slo_id}/evaluate")
def evaluate_now(
    request: Request, session: SessionDep, settings: SettingsDep, viewer: WriterDep, slo_id: int
) -> Response:
    slo = evaluate.evaluate_now(
        session=session,
        actor=viewer.actor,
        slo_id=slo_id,
        prometheus=jobs.prometheus_measure(settings),
    )
    session.commit()
    message = f"Evaluated {slo.name}: {slo.status}" + (
        f" ({slo.status_reason})." if slo.status_reason else "."
    )
    return redirect_after_post(request, f"/slos/{slo.id}", message, viewer)


@router.post("/slos/{slo_id}/rotate-key")
def rotate_key(request: Request, session: SessionDep, viewer: WriterDep, slo_id: int) -> Response:
    key = service.rotate_ingest_key(session=session, actor=viewer.actor, slo_id=slo_id)
    session.commit()
    message = "A new ingest key is in force; the old one no longer works."
    return redirect_after_post(request, f"/slos/{slo_id}", message, viewer, {"ingest_key": key})


@router.post("/slos/{slo_id}/exception")
def grant_exception(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    viewer: WriterDep,
    slo_id: int,
    reason: FormField = "",
    hours: FormField = "24",
) -> Response:
    """Allow releases of the SLO's frozen entity for a while; the reason is required."""
    slo = service.get(session=session, slo_id=slo_id)
    entity = service.entity_of(session, slo)
    values = {"reason": reason, "hours": hours}
    try:
        check_lengths(values, {"reason": 2000, "hours": 10})
        try:
            length = int(hours.strip() or "24")
        except ValueError as exc:
            raise ValidationFailed.one("body.hours", "enter a whole number of hours") from exc
        if not 1 <= length <= 24 * 14:
            raise ValidationFailed.one("body.hours", "between 1 and 336 hours (two weeks)")
        service.grant_exception(
            session=session, actor=viewer.actor, entity_ref=entity.ref, reason=reason, hours=length
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        if exc.status == 403:
            raise
        form = form_failed(values, exc, conflict_field="reason")
        return _slo_page(
            request, session, settings, viewer, slo_id, exception_form=form, status=exc.status
        )
    message = f"Releases of {entity.name} may go out for {length} hours despite the freeze."
    return redirect_after_post(request, f"/slos/{slo_id}", message, viewer)


@router.get("/slos/{slo_id}/delete")
def delete_slo_form(
    request: Request, session: SessionDep, viewer: ViewerDep, slo_id: int
) -> Response:
    slo, entity = _writable(session, viewer, slo_id)
    context = {"slo": slo, "entity": entity, "entity_url": entity_url}
    return render(request, "slo/delete.html", context, viewer=viewer)


@router.post("/slos/{slo_id}/delete")
def delete_slo(request: Request, session: SessionDep, viewer: WriterDep, slo_id: int) -> Response:
    slo = service.get(session=session, slo_id=slo_id)
    name, entity = slo.name, service.entity_of(session, slo)
    service.delete(session=session, actor=viewer.actor, slo_id=slo_id)
    session.commit()
    message = f"Deleted the SLO {name} of {entity.name}; its history went with it."
    return redirect_after_post(request, "/slos", message, viewer)
