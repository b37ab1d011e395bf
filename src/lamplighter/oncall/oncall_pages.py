"""The on-call pages: schedules (the list; one schedule as a 14-day timeline with its layers,
the final schedule, who is on call now and, for its owners, a form to add an override),
escalation policies with their tiers, and "My contact methods" (methods and notification rules).

Thin adapters like the frontline pages: parse the form, call one on-call service function,
commit once, redirect (303) with a message; errors go next to their fields. Who may change a
schedule is ``schedules.may_write``; whose contact methods one may change is
``contacts.may_manage`` (these pages only ever change the viewer's own).

The timeline draws its bars as SVG with percentage ``x``/``width`` attributes: the pages' CSP
(``default-src 'self'``) drops inline ``style`` attributes, so ``left: 12.5%`` would not apply,
while SVG presentation attributes are not styles and do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRouter
from sqlalchemy.orm import Session

from lamplighter.core import identity, outbound, people, timefmt
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import utcnow
from lamplighter.core.deps import SessionDep, SettingsDep
from lamplighter.core.errors import FieldError, LamplighterError, NotFound, ValidationFailed
from lamplighter.core.pagination import decode_cursor, encode_cursor
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
from lamplighter.oncall import contacts, on_duty, policies, schedules
from lamplighter.oncall.models import OnCallSchedule
from lamplighter.oncall.schedule_schemas import OverrideCreate
from lamplighter.oncall.shifts import Shift

router = APIRouter(include_in_schema=False, route_class=PageRoute)

PAGE_SIZE = 50
TIMELINE_DAYS = 14
# Light fills with dark text (contrast above 7:1 with #18202b), one per person in turn.
PALETTE = ("#dbe7ff", "#fde7c4", "#d5f2e3", "#f7d9e3", "#e6defa", "#d9f0f6", "#efe9c8", "#e4e7eb")
MY_CONTACTS = "/oncall/me/contacts"


# -- the timeline -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    """One shift on a row: where it sits over the range, in percent, and who it is."""

    left_pct: float
    width_pct: float
    name: str
    fill: str
    words: str  # "Ada, 3 Jun 2027, 09:00 UTC to 10 Jun 2027, 09:00 UTC"


@dataclass(frozen=True)
class TimelineRow:
    label: str
    kind: str  # rotation, imported, overrides, final
    bars: list[Bar]

    @property
    def summary(self) -> str:
        """What the row shows, for a screen reader."""
        if not self.bars:
            return f"{self.label}: nobody in these {TIMELINE_DAYS} days"
        return f"{self.label}: " + "; ".join(bar.words for bar in self.bars)


@dataclass(frozen=True)
class Tick:
    left_pct: float
    label: str


@dataclass(frozen=True)
class FinalRow:
    name: str
    start: dt.datetime
    end: dt.datetime
    layer: str | None  # "override" for an override


def _pct(part: dt.timedelta, whole: dt.timedelta) -> float:
    return round(max(0.0, min(100.0, part / whole * 100)), 3)


def bars_of(
    shifts: Sequence[Shift],
    *,
    start: dt.datetime,
    end: dt.datetime,
    names: dict[int, str],
    fills: dict[int, str],
    tz: str,
) -> list[Bar]:
    """The shifts as bars over [start, end), each placed by percentage of the range."""
    whole = end - start
    bars = []
    for shift in shifts:
        user_id = int(shift.user)
        name = names.get(user_id, f"user {user_id}")
        since, until = max(shift.start, start), min(shift.end, end)
        words = f"{name}, {timefmt.readable(since, tz)} to {timefmt.readable(until, tz)}"
        bars.append(
            Bar(
                _pct(since - start, whole),
                _pct(until - since, whole),
                name,
                fills.get(user_id, PALETTE[-1]),
                words,
            )
        )
    return bars


def _fills(view: schedules.FinalView) -> dict[int, str]:
    """One colour per person, in the order they first appear (the colour only repeats the name)."""
    order: dict[int, str] = {}
    every = [s for _, _, shifts in view.layers for s in shifts] + view.overrides + view.final
    for shift in sorted(every, key=lambda s: (s.start, s.user)):
        order.setdefault(int(shift.user), PALETTE[len(order) % len(PALETTE)])
    return order


def timeline_rows(view: schedules.FinalView, tz: str) -> list[TimelineRow]:
    """A row per layer from the top (as the schedule is read), the overrides, then the final."""
    common: dict[str, Any] = {
        "start": view.start,
        "end": view.end,
        "names": view.names,
        "fills": _fills(view),
        "tz": tz,
    }
    rows = [
        TimelineRow(f"Layer {name}", kind, bars_of(shifts, **common))
        for name, kind, shifts in reversed(view.layers)
    ]
    if view.overrides:
        rows.append(TimelineRow("Overrides", "overrides", bars_of(view.overrides, **common)))
    rows.append(TimelineRow("Final schedule", "final", bars_of(view.final, **common)))
    return rows


def day_ticks(start: dt.datetime, days: int, tz: str) -> list[Tick]:
    zone = timefmt.zone_of(tz)
    whole = dt.timedelta(days=days)
    first = start.astimezone(zone).date()
    ticks = []
    for offset in range(days):
        day = first + dt.timedelta(days=offset)
        at = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
        ticks.append(Tick(_pct(at - start, whole), f"{day:%a} {day.day}"))
    return ticks


def range_of(text: str, tz: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """From 00:00 of the chosen day (today without one) in ``tz``, for 14 days."""
    zone = timefmt.zone_of(tz)
    if text:
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise ValidationFailed.one("query.start", "choose a day such as 2027-06-01") from None
        if not 1970 <= day.year <= 2999:
            raise ValidationFailed.one("query.start", "choose a day between 1970 and 2999")
    else:
        day = now.astimezone(zone).date()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    return start, start + dt.timedelta(days=TIMELINE_DAYS)


def moment_of(text: str, field: str, time_zone: str) -> dt.datetime:
    """``2027-06-03 09:00`` in the schedule's zone, or ISO 8601 with an offset."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationFailed.one(
            f"body.{field}", "write a time such as 2027-06-03 09:00 or 2027-06-03T09:00+02:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timefmt.zone_of(time_zone))


def _override_data(
    session: Session, schedule: OnCallSchedule, values: dict[str, str]
) -> OverrideCreate:
    """The form as :class:`OverrideCreate`; every problem named on its own field at once."""
    errors: list[FieldError] = []
    data: dict[str, Any] = {"reason": values["reason"]}
    person = identity.get_user_by_email(session=session, email=values["user"])
    if not values["user"]:
        errors.append(FieldError("body.user", "give the email address of who takes over"))
    elif person is None:
        errors.append(FieldError("body.user", f"nobody signs in as {values['user']}"))
    else:
        data["user_id"] = person.id
    for field, key in (("starts", "starts_at"), ("ends", "ends_at")):
        try:
            data[key] = moment_of(values[field], field, schedule.time_zone)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if errors:
        raise ValidationFailed("the override is not valid", errors=errors)
    try:
        return OverrideCreate.model_validate(data)
    except pydantic.ValidationError as exc:
        aliases = {"user_id": "user", "starts_at": "starts", "ends_at": "ends"}
        found = [
            FieldError(
                "body." + aliases.get(str(loc[0]), str(loc[0])) if loc else "body",
                str(error.get("msg", "invalid")).removeprefix("Value error, "),
            )
            for error in exc.errors()
            for loc in [error.get("loc", ())]
        ]
        raise ValidationFailed("the override is not valid", errors=found) from exc


# -- schedules --------------------------------------------------------------------------------
@router.get("/oncall/schedules")
def schedule_list(
    request: Request, session: SessionDep, viewer: ViewerDep, cursor: QueryText = ""
) -> Response:
    """Every on-call schedule, with its team and time zone."""
    found = schedules.list_(session=session, after_id=decode_cursor(cursor), limit=PAGE_SIZE + 1)
    next_cursor = None
    if len(found) > PAGE_SIZE:
        found, next_cursor = found[:PAGE_SIZE], encode_cursor(found[PAGE_SIZE - 1].id)
    rows = [schedules.read(session=session, schedule=s) for s in found]
    context = {"rows": rows, **page_links(request, next_cursor, 1 if cursor else None)}
    return render(request, "oncall/schedules.html", context, viewer=viewer)


def _schedule_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    schedule_id: int,
    *,
    start: str = "",
    form: FormState | None = None,
    status: int = 200,
) -> Response:
    schedule = schedules.get(session=session, schedule_id=schedule_id)
    tz = viewer.user.time_zone
    now = utcnow()
    filters = FormState({"start": start.strip()})
    try:
        begin, end = range_of(filters.values["start"], tz, now)
    except ValidationFailed as exc:
        filters.errors["start"] = exc.errors[0].reason
        begin, end = range_of("", tz, now)
    view = schedules.final(session=session, schedule_id=schedule.id, start=begin, end=end)
    final_rows = [
        FinalRow(view.names.get(int(s.user), f"user {s.user}"), s.start, s.end, s.layer)
        for s in view.final
    ]
    step = dt.timedelta(days=TIMELINE_DAYS)
    in_view = begin <= now < end
    context = {
        "schedule": schedules.read(session=session, schedule=schedule),
        "filters": filters,
        "start": begin,
        "end": end,
        "days": TIMELINE_DAYS,
        "rows": timeline_rows(view, tz),
        "ticks": day_ticks(begin, TIMELINE_DAYS, tz),
        "now_pct": _pct(now - begin, end - begin) if in_view else None,
        "final_rows": final_rows,
        "on_call": on_duty.who_is_on_call(session, schedule_id=schedule.id, at=now),
        "previous_start": (begin - step).astimezone(timefmt.zone_of(tz)).date().isoformat(),
        "next_start": (begin + step).astimezone(timefmt.zone_of(tz)).date().isoformat(),
        "may_write": schedules.may_write(viewer.actor, schedule),
        "form": form or FormState({"user": "", "starts": "", "ends": "", "reason": ""}),
    }
    code = 422 if filters.errors and status == 200 else status
    return render(request, "oncall/schedules_detail.html", context, viewer=viewer, status=code)


@router.get("/oncall/schedules/{schedule_id:int}")
def schedule_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    schedule_id: int,
    start: QueryText = "",
) -> Response:
    """A schedule over 14 days: its layers, the final schedule and who is on call now."""
    return _schedule_page(request, session, viewer, schedule_id, start=start)


@router.post("/oncall/schedules/{schedule_id:int}/overrides")
def create_override(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    schedule_id: int,
    user: FormField = "",
    starts: FormField = "",
    ends: FormField = "",
    reason: FormField = "",
) -> Response:
    """Put someone on call over the schedule for a while, above every layer."""
    # Refuse outsiders before reading the form: a refusal says nothing about the fields.
    schedule = schedules.require_write(session=session, actor=viewer.actor, schedule_id=schedule_id)
    values = {"user": user.strip(), "starts": starts, "ends": ends, "reason": reason}
    try:
        check_lengths(values, {"user": 320, "starts": 40, "ends": 40, "reason": 2000})
        data = _override_data(session, schedule, values)
        schedules.create_override(
            session=session, actor=viewer.actor, schedule_id=schedule.id, data=data
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        if exc.status in (401, 403):
            raise
        aliases = {"user_id": "user", "starts_at": "starts", "ends_at": "ends"}
        form = form_failed(values, exc, aliases=aliases)
        return _schedule_page(request, session, viewer, schedule_id, form=form, status=exc.status)
    tz = viewer.user.time_zone
    message = (
        f"{values['user']} is on call from {timefmt.readable(data.starts_at, tz)} "
        f"until {timefmt.readable(data.ends_at, tz)}."
    )
    start = data.starts_at.astimezone(timefmt.zone_of(tz)).date().isoformat()
    return redirect_after_post(
        request, f"/oncall/schedules/{schedule_id}?start={start}", message, viewer
    )


# -- escalation policies ----------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    kind: str  # schedule, user, team
    name: str
    url: str | None


@dataclass(frozen=True)
class TierView:
    number: int
    name: str
    delay_minutes: int
    targets: list[Target]


def _targets_named(
    session: Session, found: Sequence[dict[str, Any]]
) -> dict[tuple[str, int], Target]:
    """Every target of these policies by name: schedules, people and teams, each fetched once."""
    wanted: dict[str, set[int]] = {"schedule": set(), "user": set(), "team": set()}
    for policy in found:
        for tier in policy["tiers"]:
            for target in tier.get("targets") or []:
                if target.get("type") in wanted and isinstance(target.get("id"), int):
                    wanted[target["type"]].add(target["id"])
    named: dict[tuple[str, int], Target] = {}
    for schedule_id in sorted(wanted["schedule"]):
        try:
            schedule = schedules.get(session=session, schedule_id=schedule_id)
        except NotFound:
            continue
        named["schedule", schedule_id] = Target(
            "schedule", schedule.name, f"/oncall/schedules/{schedule_id}"
        )
    for user_id, user in people.users_by_id(session=session, ids=wanted["user"]).items():
        named["user", user_id] = Target("user", user.display_name, None)
    for team_id, team in people.teams_by_id(session=session, ids=wanted["team"]).items():
        named["team", team_id] = Target("team", team.name, f"/teams/{team.slug}")
    return named


def tiers_of(policy: dict[str, Any], named: dict[tuple[str, int], Target]) -> list[TierView]:
    tiers = []
    for number, tier in enumerate(policy["tiers"], start=1):
        targets = [
            named.get(
                (str(t.get("type")), t.get("id")),
                Target(str(t.get("type")), f"{t.get('type')} {t.get('id')} (gone)", None),
            )
            for t in tier.get("targets") or []
        ]
        tiers.append(
            TierView(
                number, tier.get("name") or f"Tier {number}", int(tier["delay_minutes"]), targets
            )
        )
    return tiers


@router.get("/oncall/policies")
def policy_list(
    request: Request, session: SessionDep, viewer: ViewerDep, cursor: QueryText = ""
) -> Response:
    """Escalation policies: each team's chain of tiers, in the order they are notified."""
    found = policies.list_(session=session, after_id=decode_cursor(cursor), limit=PAGE_SIZE + 1)
    next_cursor = None
    if len(found) > PAGE_SIZE:
        found, next_cursor = found[:PAGE_SIZE], encode_cursor(found[PAGE_SIZE - 1].id)
    read = policies.read_many(session, found)
    named = _targets_named(session, read)
    teams = people.teams_by_id(session=session, ids=[p["team_id"] for p in read])
    rows = [(p, teams.get(p["team_id"]), tiers_of(p, named)) for p in read]
    context = {"rows": rows, **page_links(request, next_cursor, 1 if cursor else None)}
    return render(request, "oncall/policies.html", context, viewer=viewer)


# -- my contact methods -----------------------------------------------------------------------
def _contacts_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    forms: dict[str, FormState] | None = None,
    status: int = 200,
) -> Response:
    me = viewer.user.id
    methods = [contacts.read_method(m) for m in contacts.methods_of(session, me)]
    rules = [contacts.read_rule(r, m) for r, m in contacts.rules_of(session, me)]
    blank = {
        "method": FormState({"address": "", "label": ""}),
        "rule": FormState({"contact_method_id": "", "delay_minutes": "0"}),
    }
    context = {
        "methods": methods,
        "rules": rules,
        "method_choices": [(str(m["id"]), f"{m['label']} ({m['hint']})") for m in methods],
        "forms": {**blank, **(forms or {})},
    }
    return render(request, "oncall/contacts.html", context, viewer=viewer, status=status)


def _refused_or_form(
    values: dict[str, str], exc: LamplighterError, conflict_field: str
) -> FormState:
    if exc.status in (401, 403) or (isinstance(exc, NotFound) and not exc.errors):
        raise exc
    return form_failed(values, exc, conflict_field=conflict_field)


def _whole(text: str, field: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValidationFailed.one(f"body.{field}", f"choose {what}") from None


@router.get(MY_CONTACTS)
def contact_page(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    """How you are reached when paged: your contact methods and notification rules."""
    return _contacts_page(request, session, viewer)


@router.post(MY_CONTACTS + "/methods")
def create_email_method(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    viewer: WriterDep,
    address: FormField = "",
    label: FormField = "",
) -> Response:
    """Add an email address to be reached at."""
    values = {"address": address.strip(), "label": label}
    box: SecretBox = request.app.state.box
    try:
        check_lengths(values, {"address": 320, "label": 100})
        method = contacts.create_method(
            session=session,
            actor=viewer.actor,
            user_id=viewer.user.id,
            kind="email",
            box=box,
            address=values["address"],
            label=label,
            policy=outbound.Policy.from_settings(settings),
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = _refused_or_form(values, exc, "address")
        return _contacts_page(request, session, viewer, forms={"method": form}, status=exc.status)
    message = f"Added {method.address_hint}. Add a rule to say when it is used."
    return redirect_after_post(request, MY_CONTACTS, message, viewer)


@router.post(MY_CONTACTS + "/methods/{method_id:int}/delete")
def delete_method(
    request: Request, session: SessionDep, viewer: WriterDep, method_id: int
) -> Response:
    """Remove one of your contact methods and the rules that use it."""
    contacts.delete_method(
        session=session, actor=viewer.actor, user_id=viewer.user.id, method_id=method_id
    )
    session.commit()
    return redirect_after_post(
        request, MY_CONTACTS, "Removed the contact method and its rules.", viewer
    )


@router.post(MY_CONTACTS + "/rules")
def create_rule(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    contact_method_id: FormField = "",
    delay_minutes: FormField = "",
) -> Response:
    """Add "after this many minutes, by this method"."""
    values = {"contact_method_id": contact_method_id, "delay_minutes": delay_minutes}
    try:
        check_lengths(values, {"contact_method_id": 12, "delay_minutes": 6})
        method_id = _whole(contact_method_id, "contact_method_id", "one of your contact methods")
        delay = _whole(delay_minutes, "delay_minutes", "a whole number of minutes")
        rule = contacts.create_rule(
            session=session,
            actor=viewer.actor,
            user_id=viewer.user.id,
            contact_method_id=method_id,
            delay_minutes=delay,
        )
        method = contacts.get_method(session=session, method_id=rule.contact_method_id)
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = _refused_or_form(values, exc, "delay_minutes")
        return _contacts_page(request, session, viewer, forms={"rule": form}, status=exc.status)
    when = "at once" if delay == 0 else f"after {delay} minutes"
    message = f"When you are paged, {method.address_hint} is told {when}."
    return redirect_after_post(request, MY_CONTACTS, message, viewer)


@router.post(MY_CONTACTS + "/rules/{rule_id:int}/delete")
def delete_rule(request: Request, session: SessionDep, viewer: WriterDep, rule_id: int) -> Response:
    """Remove one of your notification rules."""
    contacts.delete_rule(
        session=session, actor=viewer.actor, user_id=viewer.user.id, rule_id=rule_id
    )
    session.commit()
    return redirect_after_post(request, MY_CONTACTS, "Removed the notification rule.", viewer)
