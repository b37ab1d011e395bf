"""On-call schedules as iCalendar: shifts imported from a calendar (a file or a URL fetched
through the outbound policy) into a layer, and each schedule's and each person's final shifts
published as feeds at secret URLs (tokens hashed, rotatable).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit, crypto, outbound, people
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import (
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from lamplighter.core.models import User
from lamplighter.oncall import ical, schedules
from lamplighter.oncall.models import (
    OnCallImportedShift,
    OnCallOverride,
    OnCallSchedule,
    UserFeed,
)
from lamplighter.oncall.schedule_schemas import (
    MAX_LAYERS,
)
from lamplighter.oncall.schedules import OBJECT_TYPE
from lamplighter.oncall.shifts import Shift

FEED_PREFIX = "llcal_"
FEED_BACK = dt.timedelta(days=30)
FEED_AHEAD = dt.timedelta(days=90)
IMPORT_BACK = dt.timedelta(days=31)
IMPORT_AHEAD = dt.timedelta(days=366)
FETCH_TIMEOUT_S = 10.0
# Tests swap the network for a transport (httpx.MockTransport); None is the real network.
TRANSPORT: httpx.BaseTransport | None = None


@dataclass(frozen=True)
class ImportOutcome:
    schedule_id: int
    layer: str
    source: str
    imported_shifts: int
    problems: list[ical.Problem]


# -- importing shifts from iCalendar ---------------------------------------------------------


def fetch_calendar(
    url: str,
    *,
    policy: outbound.Policy,
    field: str = "body.url",
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = FETCH_TIMEOUT_S,
    max_bytes: int = ical.MAX_IMPORT_BYTES,
) -> str:
    """The text of the calendar at ``url`` (``webcal://`` read as https), fetched through the
    outbound policy, without redirects, at most ``max_bytes``; refusals name ``field``."""
    if url.lower().startswith("webcal://"):
        url = "https://" + url[len("webcal://") :]
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed.one(field, "must be an absolute http, https or webcal URL")
    try:
        policy.check_url(url, resolve=True)
    except outbound.Refused as exc:
        raise ValidationFailed.one(field, str(exc)) from exc
    except httpcore.ConnectError:
        pass  # not resolvable now: the fetch below says so if it still is not
    try:
        with (
            outbound.client(policy, timeout_s=timeout_s, transport=transport or TRANSPORT) as http,
            http.stream(
                "GET",
                url,
                headers={"User-Agent": "Lamplighter-Calendar/1", "Accept": "text/calendar"},
            ) as answer,
        ):
            if answer.status_code != 200:
                raise ValidationFailed.one(field, f"the server answered HTTP {answer.status_code}")
            content = b""
            for chunk in answer.iter_bytes():
                content += chunk
                if len(content) > max_bytes:
                    raise ValidationFailed.one(
                        field, f"the calendar is larger than {max_bytes:,} bytes"
                    )
    except outbound.Refused as exc:
        raise ValidationFailed.one(field, str(exc)) from exc
    except httpx.TimeoutException as exc:
        raise ValidationFailed.one(field, f"no answer within {timeout_s:g} s") from exc
    except (httpx.HTTPError, httpcore.ConnectError) as exc:
        raise ValidationFailed.one(field, f"cannot fetch it: {exc}") from exc
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed.one(field, "the calendar is not UTF-8 text") from exc


def _people_of(session: Session, names: Iterable[str]) -> dict[str, int]:
    """Lamplighter users for the persons a calendar names: our own feeds' user id, an e-mail
    address, or a display name that one active user has (any case). A name with a NUL in it
    (a fetched file can hold anything) names nobody: PostgreSQL refuses it in a query."""
    wanted = {name for name in names if "\x00" not in name}
    found: dict[str, int] = {}
    ids = {int(n) for n in wanted if n.isdigit() and len(n) < 10}
    for user_id, user in people.users_by_id(session=session, ids=ids).items():
        if user.is_active:
            found[str(user_id)] = user.id
    emails = {n.lower() for n in wanted - set(found) if "@" in n}
    if emails:
        rows = session.execute(
            sa.select(User.id, User.email).where(
                sa.func.lower(User.email).in_(emails), User.is_active.is_(True)
            )
        )
        by_email = {email.lower(): user_id for user_id, email in rows}
        found.update({n: by_email[n.lower()] for n in wanted if n.lower() in by_email})
    display = {n.lower() for n in wanted - set(found)}
    if display:
        rows = session.execute(
            sa.select(User.id, User.display_name).where(
                sa.func.lower(User.display_name).in_(display), User.is_active.is_(True)
            )
        )
        by_name: dict[str, list[int]] = {}
        for user_id, display_name in rows:
            by_name.setdefault(display_name.lower(), []).append(user_id)
        found.update(
            {
                n: by_name[n.lower()][0]
                for n in wanted - set(found)
                if len(by_name.get(n.lower(), [])) == 1
            }
        )
    return found


def import_ics(
    *,
    session: Session,
    actor: Actor,
    schedule_id: int,
    layer: str,
    text: str,
    source: str,
    field: str = "body.content",
    now: dt.datetime | None = None,
) -> ImportOutcome:
    """Make the shifts of an iCalendar file (a month back to a year ahead) the layer ``layer``:
    a new layer on top, or the imported layer of that name again (its shifts replaced). Events
    that cannot be read, or name nobody known here, are left out and listed; a file with nothing
    to import changes nothing and is refused, naming why."""
    schedule = schedules.get(session=session, schedule_id=schedule_id)
    schedules.require_team_write(actor, schedule.team_id)
    existing = next((e for e in schedule.layers if e["name"] == layer), None)
    if existing is not None and not schedules.is_imported(existing):
        raise ValidationFailed.one(
            "body.layer", f"{layer!r} is a rotation layer; import into a new or imported layer"
        )
    if existing is None and len(schedule.layers) >= MAX_LAYERS:
        raise ValidationFailed.one("body.layer", f"a schedule has at most {MAX_LAYERS} layers")
    now = now or utcnow()
    result = ical.from_ics(text, start=now - IMPORT_BACK, end=now + IMPORT_AHEAD)
    problems = list(result.problems)
    users = _people_of(session, {shift.user for shift in result.shifts})
    unknown: dict[str, int] = {}
    rows = []
    for shift in result.shifts:
        user_id = users.get(shift.user)
        if user_id is None:
            unknown[shift.user] = unknown.get(shift.user, 0) + 1
            continue
        rows.append(
            {
                "schedule_id": schedule.id,
                "layer": layer,
                "user_id": user_id,
                "starts_at": shift.start,
                "ends_at": shift.end,
            }
        )
    problems += [
        ical.Problem(None, f"nobody here is {person!r}: {count} shift(s) left out")
        for person, count in sorted(unknown.items())
    ]
    if not rows and problems:
        errors = [FieldError(field, str(problem)) for problem in problems[:50]]
        raise ValidationFailed(f"nothing to import: {problems[0]}", errors=errors)
    session.execute(
        sa.delete(OnCallImportedShift).where(
            OnCallImportedShift.schedule_id == schedule.id, OnCallImportedShift.layer == layer
        )
    )
    if rows:
        session.execute(sa.insert(OnCallImportedShift), rows)
    entry = {"name": layer, "kind": "imported", "source": source, "imported_at": now.isoformat()}
    if existing is None:
        schedule.layers = [*schedule.layers, entry]
    else:
        schedule.layers = [entry if e["name"] == layer else e for e in schedule.layers]
    schedule.updated_at = utcnow()  # the compiled layers hold the shifts: a new version
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="schedule.import_ics",
        object_type=OBJECT_TYPE,
        object_id=schedule.id,
        after={"layer": layer, "source": source, "shifts": len(rows), "problems": len(problems)},
    )
    return ImportOutcome(schedule.id, layer, source, len(rows), problems)


# -- iCalendar feeds -----------------------------------------------------------------------------


def _new_feed_token() -> str:
    return FEED_PREFIX + secrets.token_urlsafe(32)


def feed_url(base_url: str, kind: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/oncall/feeds/{kind}/{token}.ics"


def rotate_feed_token(*, session: Session, actor: Actor, schedule_id: int) -> str:
    """A new secret for the schedule's feed (shown once); the old URL stops working at once."""
    schedule = schedules.get(session=session, schedule_id=schedule_id)
    schedules.require_team_write(actor, schedule.team_id)
    token = _new_feed_token()
    schedule.feed_token_hash = crypto.digest(token)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="schedule.rotate_feed",
        object_type=OBJECT_TYPE,
        object_id=schedule.id,
        after={"feed": "…" + token[-4:]},
    )
    return token


def rotate_user_feed_token(*, session: Session, actor: Actor) -> str:
    """A new secret for the caller's own feed of every shift they have (shown once)."""
    if actor.user_id is None:
        raise Forbidden("only a person has a feed of their own shifts")
    token = _new_feed_token()
    row = session.get(UserFeed, actor.user_id)
    if row is None:
        session.add(UserFeed(user_id=actor.user_id, token_hash=crypto.digest(token)))
    else:
        row.token_hash = crypto.digest(token)
        row.created_at = utcnow()
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="schedule.rotate_user_feed",
        object_type="user",
        object_id=actor.user_id,
        after={"feed": "…" + token[-4:]},
    )
    return token


def _feed_hash(token: str) -> str | None:
    if not token.startswith(FEED_PREFIX) or len(token) > 100:
        return None
    return crypto.digest(token)


def schedule_of_feed(*, session: Session, token: str) -> OnCallSchedule:
    """The schedule whose feed this secret opens; the same answer for any wrong secret."""
    digest = _feed_hash(token)
    schedule = (
        session.scalar(sa.select(OnCallSchedule).where(OnCallSchedule.feed_token_hash == digest))
        if digest
        else None
    )
    if schedule is None:
        raise NotFound("no calendar feed at this address")
    return schedule


def user_of_feed(*, session: Session, token: str) -> User:
    digest = _feed_hash(token)
    user_id = (
        session.scalar(sa.select(UserFeed.user_id).where(UserFeed.token_hash == digest))
        if digest
        else None
    )
    user = people.find_user(session=session, user_id=user_id)
    if user is None or not user.is_active:
        raise NotFound("no calendar feed at this address")
    return user


def schedule_feed(
    *, session: Session, schedule: OnCallSchedule, now: dt.datetime | None = None
) -> str:
    """The schedule's final shifts from 30 days back to 90 ahead, as iCalendar."""
    now = now or utcnow()
    view = schedules.final_view(session, schedule, now - FEED_BACK, now + FEED_AHEAD)
    names = {str(user_id): name for user_id, name in view.names.items()}
    return ical.to_ics(view.final, calendar_name=schedule.name, names=names, generated_at=now)


def user_feed(*, session: Session, user: User, now: dt.datetime | None = None) -> str:
    """Every shift ``user`` has on any schedule (the final schedule's: an override taking a
    turn away removes it), 30 days back to 90 ahead, as iCalendar."""
    now = now or utcnow()
    start, end = now - FEED_BACK, now + FEED_AHEAD
    candidates = set(
        session.scalars(
            sa.select(OnCallOverride.schedule_id).where(
                OnCallOverride.user_id == user.id,
                OnCallOverride.ends_at > start,
                OnCallOverride.starts_at < end,
            )
        )
    )
    # Who takes part in a rotation is in its layers' JSON: the compiled schedules (cached) say.
    rows = session.execute(sa.select(OnCallSchedule.id, OnCallSchedule.updated_at)).all()
    for schedule_id, updated_at in rows:
        if (
            user.id
            in schedules.compiled(
                session, schedule_id=schedule_id, updated_at=updated_at
            ).participants
        ):
            candidates.add(schedule_id)
    shifts: list[Shift] = []
    for schedule_id in sorted(candidates):
        view = schedules.final_view(
            session, schedules.get(session=session, schedule_id=schedule_id), start, end
        )
        shifts += [
            Shift(s.start, s.end, s.user, view.schedule.name)
            for s in view.final
            if s.user == str(user.id)
        ]
    return ical.to_ics(
        shifts,
        calendar_name=f"On call: {user.display_name}",
        names={str(user.id): user.display_name},
        generated_at=now,
        source_of=lambda shift: shift.layer or "",
    )
