"""On-call schedules: define them, override them, import shifts into them, publish them as
iCalendar feeds, and answer who is on call. Everything else (API, CLI, feeds, panels, the
escalations to come) calls these.

A schedule belongs to a team: everyone signed in reads it; its team's members, SREs and admins
change it, its overrides and its feed. Every change is audited (``schedule.*``).

The engine (``oncall.schedule``) does the maths. A schedule's layers are compiled into engine
objects once per process and version of the row: the cache is keyed by (schedule id,
``updated_at``), so a change anywhere is seen at once, and "who is on call now" costs a few
indexed reads plus the engine's answer at T (no walk from the rotation's anchor). Overrides are
read for the time asked about, so adding one does not throw the compiled layers away.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit, crypto, outbound, people
from lamplighter.core.authz import can_write_owned, require_owned_write
from lamplighter.core.context import Actor
from lamplighter.core.db import driver_json, driver_rows, driver_time, from_driver_time, utcnow
from lamplighter.core.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from lamplighter.core.models import Team, User
from lamplighter.core.pagination import keyset
from lamplighter.oncall import ical
from lamplighter.oncall import schedule as engine
from lamplighter.oncall.models import (
    EscalationPolicy,
    OnCallImportedShift,
    OnCallOverride,
    OnCallSchedule,
    UserFeed,
)
from lamplighter.oncall.schedule_schemas import (
    MAX_LAYERS,
    LayerIn,
    OverrideCreate,
    RestrictionIn,
    ScheduleCreate,
    ScheduleUpdate,
)
from lamplighter.oncall.shifts import Shift

OBJECT_TYPE = "oncall_schedule"
FEED_PREFIX = "llcal_"
FEED_BACK = dt.timedelta(days=30)
FEED_AHEAD = dt.timedelta(days=90)
MAX_FINAL_RANGE = dt.timedelta(days=93)
IMPORT_BACK = dt.timedelta(days=31)
IMPORT_AHEAD = dt.timedelta(days=366)
FETCH_TIMEOUT_S = 10.0
# How far around T "since when, until when" is looked for: a day answers almost every schedule
# at once; a weekly turn needs eight; longer turns (or an override of months) the last, and a
# stretch longer still is shown cut at 64 days.
NOW_REACHES = (dt.timedelta(days=1), dt.timedelta(days=8), dt.timedelta(days=64))
# Tests swap the network for a transport (httpx.MockTransport); None is the real network.
TRANSPORT: httpx.BaseTransport | None = None


@dataclass(frozen=True)
class OnCallNow:
    """Someone on call at a time: from which schedule and layer, since and until when.

    Reached through an escalation policy's user or team target, the schedule fields are None."""

    user_id: int
    display_name: str
    email: str
    schedule_id: int | None
    schedule_name: str | None
    layer: str | None
    since: dt.datetime | None
    until: dt.datetime | None


@dataclass(frozen=True)
class ImportOutcome:
    schedule_id: int
    layer: str
    source: str
    imported_shifts: int
    problems: list[ical.Problem]


@dataclass(frozen=True)
class FinalView:
    """A schedule over a range: the final shifts, each layer's own, and the overrides."""

    schedule: OnCallSchedule
    start: dt.datetime
    end: dt.datetime
    final: list[Shift]
    layers: list[tuple[str, str, list[Shift]]]  # (name, kind, shifts), bottom first
    overrides: list[Shift]
    names: dict[int, str]  # user id -> display name, for everyone in the shifts


# -- the compiled schedule, cached per process -----------------------------------------------


@dataclass(frozen=True)
class Compiled:
    layers: tuple[engine.AnyLayer, ...]
    participants: frozenset[int]


_CACHE: dict[int, tuple[dt.datetime, Compiled]] = {}
_CACHE_LOCK = threading.Lock()
MAX_CACHED = 5000


def _moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _time(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def _time_text(value: dt.time) -> str:
    return value.strftime("%H:%M") if not value.second else value.strftime("%H:%M:%S")


def _rotation_layer(entry: dict[str, Any], default_zone: str) -> engine.Layer:
    versions = []
    for version in entry["versions"]:
        restrictions = tuple(
            engine.Restriction(
                int(item["start_weekday"]),
                _time(item["start_time"]),
                int(item["end_weekday"]),
                _time(item["end_time"]),
            )
            for item in version.get("restrictions") or ()
        )
        rotation = engine.Rotation(
            tuple(str(user_id) for user_id in version["participants"]),
            engine.RotationKind(version["kind"]),
            int(version["every"]),
            _moment(version["anchor"]),
            version.get("time_zone") or default_zone,
            restrictions,
        )
        versions.append(engine.LayerVersion(_moment(version["effective_from"]), rotation))
    until = entry.get("until")
    return engine.Layer(entry["name"], tuple(versions), _moment(until) if until else None)


def _is_imported(entry: dict[str, Any]) -> bool:
    return entry.get("kind") == "imported"


def _compile(
    layers: Sequence[dict[str, Any]], time_zone: str, imported: dict[str, list[Shift]]
) -> Compiled:
    compiled: list[engine.AnyLayer] = []
    participants: set[int] = set()
    for entry in layers:
        if _is_imported(entry):
            shifts = imported.get(entry["name"], [])
            compiled.append(engine.FixedLayer(entry["name"], tuple(shifts)))
            participants.update(int(shift.user) for shift in shifts)
        else:
            compiled.append(_rotation_layer(entry, time_zone))
            for version in entry["versions"]:
                participants.update(int(user_id) for user_id in version["participants"])
    return Compiled(tuple(compiled), frozenset(participants))


def _imported_shifts(session: Session, schedule_id: int) -> dict[str, list[Shift]]:
    rows = session.execute(
        sa.select(
            OnCallImportedShift.layer,
            OnCallImportedShift.user_id,
            OnCallImportedShift.starts_at,
            OnCallImportedShift.ends_at,
        )
        .where(OnCallImportedShift.schedule_id == schedule_id)
        .order_by(OnCallImportedShift.starts_at, OnCallImportedShift.id)
    )
    found: dict[str, list[Shift]] = {}
    for layer, user_id, starts_at, ends_at in rows:
        found.setdefault(layer, []).append(Shift(starts_at, ends_at, str(user_id), layer))
    return found


def compiled(session: Session, *, schedule_id: int, updated_at: dt.datetime) -> Compiled:
    """The schedule's layers as engine objects, from this process's cache when current."""
    with _CACHE_LOCK:
        hit = _CACHE.get(schedule_id)
    if hit is not None and hit[0] == updated_at:
        return hit[1]
    schedule = get(session=session, schedule_id=schedule_id)
    result = _compile(schedule.layers, schedule.time_zone, _imported_shifts(session, schedule_id))
    with _CACHE_LOCK:
        if len(_CACHE) >= MAX_CACHED:
            _CACHE.clear()  # schedules deleted or long unused: start afresh, rarely
        _CACHE[schedule_id] = (updated_at, result)
    return result


def _compiled_of(session: Session, schedule: OnCallSchedule) -> Compiled:
    return compiled(session, schedule_id=schedule.id, updated_at=schedule.updated_at)


# -- reading -------------------------------------------------------------------------------------


def get(*, session: Session, schedule_id: int) -> OnCallSchedule:
    schedule = session.get(OnCallSchedule, schedule_id)
    if schedule is None:
        raise NotFound(f"no on-call schedule {schedule_id}")
    return schedule


def list_(
    *, session: Session, team_id: int | None = None, after_id: int | None = None, limit: int = 50
) -> list[OnCallSchedule]:
    """Schedules in id order (of one team when given), from after a cursor's position."""
    query = sa.select(OnCallSchedule)
    if team_id is not None:
        query = query.where(OnCallSchedule.team_id == team_id)
    return list(session.scalars(keyset(query, OnCallSchedule.id, position=after_id, limit=limit)))


def team_by_slug(*, session: Session, slug: str, field: str) -> Team:
    team = people.find_team_by_slug(session=session, slug=slug)
    if team is None:
        raise ValidationFailed.one(field, f"no team with slug {slug!r}")
    return team


def snapshot(schedule: OnCallSchedule) -> dict[str, Any]:
    return {
        "team_id": schedule.team_id,
        "name": schedule.name,
        "description": schedule.description,
        "time_zone": schedule.time_zone,
        "layers": schedule.layers,
    }


def read(*, session: Session, schedule: OnCallSchedule) -> dict[str, Any]:
    """The schedule as the API answers it (:class:`ScheduleRead`)."""
    team = people.find_team(session=session, team_id=schedule.team_id)
    return {
        "id": schedule.id,
        "team": team.slug if team is not None else "",
        "name": schedule.name,
        "description": schedule.description,
        "time_zone": schedule.time_zone,
        "layers": schedule.layers,
        "feed": schedule.feed_token_hash is not None,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    }


def may_write(actor: Actor, schedule: OnCallSchedule) -> bool:
    """Whether ``actor`` may change the schedule, its overrides and its feed."""
    return can_write_owned(actor, schedule.team_id)


def require_write(*, session: Session, actor: Actor, schedule_id: int) -> OnCallSchedule:
    """The schedule, when ``actor`` may change it (Forbidden otherwise)."""
    schedule = get(session=session, schedule_id=schedule_id)
    _require_write(actor, schedule.team_id)
    return schedule


def _require_write(actor: Actor, team_id: int, team_slug: str | None = None) -> None:
    what = f"the on-call schedules of {team_slug}" if team_slug else "this on-call schedule"
    require_owned_write(actor, team_id, what)


# -- layers from the API's input -----------------------------------------------------------------


def _engine_error(exc: ValueError, base: str) -> FieldError:
    """An engine refusal ("every: a rotation length is …") as an error on the field it names."""
    text = str(exc)
    name, sep, reason = text.partition(": ")
    if sep and name.isidentifier():
        return FieldError(f"{base}.{name}", reason)
    return FieldError(base, text)


def _restrictions(
    items: Iterable[RestrictionIn], base: str, errors: list[FieldError]
) -> list[dict[str, Any]]:
    """The restrictions as stored: one range each, the daily form spread over its days."""
    stored: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        start, end = _time(item.start_time), _time(item.end_time)
        try:
            if item.start_weekday is not None and item.end_weekday is not None:
                ranges = [engine.Restriction(item.start_weekday, start, item.end_weekday, end)]
            else:
                days = item.weekdays if item.weekdays is not None else engine.EVERY_DAY
                ranges = list(engine.daily_restrictions(start, end, weekdays=days))
        except ValueError as exc:
            errors.append(_engine_error(exc, f"{base}.{index}"))
            continue
        stored.extend(
            {
                "start_weekday": r.start_weekday,
                "start_time": _time_text(r.start_time),
                "end_weekday": r.end_weekday,
                "end_time": _time_text(r.end_time),
            }
            for r in ranges
        )
    return stored


def _rotation_entry(layer: LayerIn, base: str, errors: list[FieldError]) -> dict[str, Any]:
    return {
        "name": layer.name,
        "kind": "rotation",
        "until": layer.until.isoformat() if layer.until else None,
        "versions": [
            {
                "effective_from": version.effective_from.isoformat(),
                "participants": list(version.participants),
                "kind": version.kind,
                "every": version.every,
                "anchor": (version.anchor or version.effective_from).isoformat(),
                "time_zone": version.time_zone,
                "restrictions": _restrictions(
                    version.restrictions, f"{base}.versions.{index}.restrictions", errors
                ),
            }
            for index, version in enumerate(layer.versions)
        ],
    }


def _check_layer(entry: dict[str, Any], time_zone: str, base: str) -> list[FieldError]:
    """Build the layer with the engine (its own rules), naming what it refuses."""
    errors: list[FieldError] = []
    for index, version in enumerate(entry["versions"]):
        try:
            _rotation_layer({**entry, "versions": [version], "until": None}, time_zone)
        except ValueError as exc:
            errors.append(_engine_error(exc, f"{base}.versions.{index}"))
    if not errors:
        try:
            _rotation_layer(entry, time_zone)
        except ValueError as exc:
            errors.append(_engine_error(exc, base))
    return errors


def _participants_errors(
    session: Session, layers: Sequence[dict[str, Any]], field: str
) -> list[FieldError]:
    wanted = {
        int(user_id)
        for entry in layers
        if not _is_imported(entry)
        for version in entry["versions"]
        for user_id in version["participants"]
    }
    users = people.users_by_id(session=session, ids=wanted)
    errors: list[FieldError] = []
    for i, entry in enumerate(layers):
        if _is_imported(entry):
            continue
        for j, version in enumerate(entry["versions"]):
            for user_id in version["participants"]:
                user = users.get(int(user_id))
                where = f"{field}.{i}.versions.{j}.participants"
                if user is None:
                    errors.append(FieldError(where, f"no user with id {user_id}"))
                elif not user.is_active:
                    errors.append(FieldError(where, f"{user.email} is deactivated"))
    return errors


def _stored_layers(
    session: Session,
    layers: Sequence[LayerIn],
    *,
    time_zone: str,
    current: Sequence[dict[str, Any]] = (),
    field: str = "body.layers",
) -> list[dict[str, Any]]:
    """The layers as stored, checked by the engine; imported layers keep what they hold."""
    existing = {entry["name"]: entry for entry in current}
    stored: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    seen: set[str] = set()
    for index, layer in enumerate(layers):
        base = f"{field}.{index}"
        if layer.name in seen:
            errors.append(FieldError(f"{base}.name", f"another layer is named {layer.name!r}"))
        seen.add(layer.name)
        if layer.kind == "imported":
            kept = existing.get(layer.name)
            entry = dict(kept) if kept and _is_imported(kept) else {"name": layer.name}
            stored.append({**entry, "kind": "imported"})
            continue
        shape_errors: list[FieldError] = []
        entry = _rotation_entry(layer, base, shape_errors)
        errors.extend(shape_errors or _check_layer(entry, time_zone, base))
        stored.append(entry)
    errors.extend(_participants_errors(session, stored, field))
    if errors:
        raise ValidationFailed(
            "; ".join(f"{e.field}: {e.reason}" for e in errors[:5]), errors=errors
        )
    return stored


# -- writing -------------------------------------------------------------------------------------


def _check_name_free(session: Session, team_id: int, name: str, schedule_id: int | None) -> None:
    query = sa.select(OnCallSchedule.id).where(
        OnCallSchedule.team_id == team_id, OnCallSchedule.name == name
    )
    if schedule_id is not None:
        query = query.where(OnCallSchedule.id != schedule_id)
    if session.scalar(query) is not None:
        raise Conflict(f"the team already has an on-call schedule named {name!r}")


def create(*, session: Session, actor: Actor, data: ScheduleCreate) -> OnCallSchedule:
    """Define a schedule for a team; its team's members, SREs and admins may."""
    team = team_by_slug(session=session, slug=data.team, field="body.team")
    _require_write(actor, team.id, team.slug)
    layers = _stored_layers(session, data.layers, time_zone=data.time_zone)
    _check_name_free(session, team.id, data.name, None)
    schedule = OnCallSchedule(
        team_id=team.id,
        name=data.name,
        description=data.description,
        time_zone=data.time_zone,
        layers=layers,
    )
    session.add(schedule)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="schedule.create",
        object_type=OBJECT_TYPE,
        object_id=schedule.id,
        after=snapshot(schedule),
    )
    return schedule


def update(
    *, session: Session, actor: Actor, schedule_id: int, data: ScheduleUpdate
) -> OnCallSchedule:
    """Change what ``data`` gives; ``layers`` replaces them all (an imported layer left out
    loses its shifts). Moving a schedule to another team needs the right to write to both."""
    schedule = get(session=session, schedule_id=schedule_id)
    _require_write(actor, schedule.team_id)
    before = snapshot(schedule)
    team_id = schedule.team_id
    if data.team is not None:
        team = team_by_slug(session=session, slug=data.team, field="body.team")
        _require_write(actor, team.id, team.slug)
        team_id = team.id
    name = data.name if data.name is not None else schedule.name
    time_zone = data.time_zone if data.time_zone is not None else schedule.time_zone
    layers = schedule.layers
    if data.layers is not None:
        layers = _stored_layers(session, data.layers, time_zone=time_zone, current=schedule.layers)
    elif time_zone != schedule.time_zone:
        # Versions without a zone of their own follow the schedule's: check them in the new one.
        for index, entry in enumerate(layers):
            if not _is_imported(entry):
                errors = _check_layer(entry, time_zone, f"body.layers.{index}")
                if errors:
                    raise ValidationFailed(errors[0].reason, errors=errors)
    if (team_id, name) != (schedule.team_id, schedule.name):
        _check_name_free(session, team_id, name, schedule.id)
    after = {
        **before,
        "team_id": team_id,
        "name": name,
        "description": data.description if data.description is not None else schedule.description,
        "time_zone": time_zone,
        "layers": layers,
    }
    if after == before:
        return schedule
    kept = {entry["name"] for entry in layers if _is_imported(entry)}
    dropped = [e["name"] for e in schedule.layers if _is_imported(e) and e["name"] not in kept]
    if dropped:
        session.execute(
            sa.delete(OnCallImportedShift).where(
                OnCallImportedShift.schedule_id == schedule.id,
                OnCallImportedShift.layer.in_(dropped),
            )
        )
    schedule.team_id = team_id
    schedule.name = name
    schedule.description = after["description"]
    schedule.time_zone = time_zone
    schedule.layers = list(layers)
    schedule.updated_at = utcnow()
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="schedule.update",
        object_type=OBJECT_TYPE,
        object_id=schedule.id,
        before=before,
        after=snapshot(schedule),
    )
    return schedule


def policies_naming(*, session: Session, schedule_id: int) -> list[str]:
    """The escalation policies with a tier that pages the schedule's on-call person."""
    rows = session.execute(sa.select(EscalationPolicy.name, EscalationPolicy.tiers)).all()
    return sorted(
        name
        for name, tiers in rows
        if any(
            isinstance(target, dict)
            and target.get("type") == "schedule"
            and target.get("id") == schedule_id
            for tier in tiers or []
            if isinstance(tier, dict)
            for target in tier.get("targets") or []
        )
    )


def delete(*, session: Session, actor: Actor, schedule_id: int) -> None:
    """Remove a schedule with its overrides and imported shifts. A schedule an escalation
    policy pages is refused: the policy would page nobody there."""
    schedule = get(session=session, schedule_id=schedule_id)
    _require_write(actor, schedule.team_id)
    naming = policies_naming(session=session, schedule_id=schedule_id)
    if naming:
        raise Conflict(
            f"the escalation policies {', '.join(naming)} page this schedule: "
            "take it out of them first"
        )
    before = snapshot(schedule)
    session.execute(sa.delete(OnCallOverride).where(OnCallOverride.schedule_id == schedule_id))
    session.execute(
        sa.delete(OnCallImportedShift).where(OnCallImportedShift.schedule_id == schedule_id)
    )
    session.delete(schedule)
    session.flush()
    with _CACHE_LOCK:
        _CACHE.pop(schedule_id, None)
    audit.record(
        session=session,
        actor=actor,
        action="schedule.delete",
        object_type=OBJECT_TYPE,
        object_id=schedule_id,
        before=before,
    )


# -- overrides -----------------------------------------------------------------------------------


def _active_user(session: Session, user_id: int, field: str) -> User:
    user = people.find_user(session=session, user_id=user_id)
    if user is None:
        raise ValidationFailed.one(field, f"no user with id {user_id}")
    if not user.is_active:
        raise ValidationFailed.one(field, f"{user.email} is deactivated")
    return user


def override_snapshot(row: OnCallOverride) -> dict[str, Any]:
    return {
        "override_id": row.id,
        "user_id": row.user_id,
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "reason": row.reason,
    }


def create_override(
    *, session: Session, actor: Actor, schedule_id: int, data: OverrideCreate
) -> OnCallOverride:
    """Put someone on call over the schedule for a range, above every layer."""
    schedule = get(session=session, schedule_id=schedule_id)
    _require_write(actor, schedule.team_id)
    _active_user(session, data.user_id, "body.user_id")
    row = OnCallOverride(
        schedule_id=schedule.id,
        user_id=data.user_id,
        starts_at=data.starts_at.astimezone(dt.UTC),
        ends_at=data.ends_at.astimezone(dt.UTC),
        reason=data.reason,
        created_by_user_id=actor.user_id,
    )
    session.add(row)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="schedule.override_create",
        object_type=OBJECT_TYPE,
        object_id=schedule.id,
        after=override_snapshot(row),
    )
    return row


def list_overrides(
    *,
    session: Session,
    schedule_id: int,
    ends_after: dt.datetime | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[OnCallOverride]:
    """The schedule's overrides in id order (those ending after ``ends_after`` when given)."""
    get(session=session, schedule_id=schedule_id)
    query = sa.select(OnCallOverride).where(OnCallOverride.schedule_id == schedule_id)
    if ends_after is not None:
        query = query.where(OnCallOverride.ends_at > ends_after)
    return list(session.scalars(keyset(query, OnCallOverride.id, position=after_id, limit=limit)))


def delete_override(*, session: Session, actor: Actor, schedule_id: int, override_id: int) -> None:
    schedule = get(session=session, schedule_id=schedule_id)
    row = session.get(OnCallOverride, override_id)
    if row is None or row.schedule_id != schedule.id:
        raise NotFound(f"schedule {schedule_id} has no override {override_id}")
    _require_write(actor, schedule.team_id)
    before = override_snapshot(row)
    session.delete(row)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="schedule.override_delete",
        object_type=OBJECT_TYPE,
        object_id=schedule.id,
        before=before,
    )


def _overrides(
    session: Session, schedule_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> dict[int, list[engine.Override]]:
    """The overrides meeting [start, end), by schedule, the earliest made first (later wins)."""
    found: dict[int, list[engine.Override]] = {}
    if not schedule_ids:
        return found
    wanted = sorted(set(schedule_ids))
    marks = ", ".join("?" for _ in wanted)
    rows = driver_rows(
        session,
        "SELECT schedule_id, user_id, starts_at, ends_at FROM oncall_overrides"  # noqa: S608
        f" WHERE schedule_id IN ({marks}) AND ends_at > ? AND starts_at < ? ORDER BY id",
        (*wanted, driver_time(session, start), driver_time(session, end)),
    )
    for schedule_id, user_id, starts_at, ends_at in rows:
        found.setdefault(schedule_id, []).append(
            engine.Override(from_driver_time(starts_at), from_driver_time(ends_at), str(user_id))
        )
    return found


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
    schedule = get(session=session, schedule_id=schedule_id)
    _require_write(actor, schedule.team_id)
    existing = next((e for e in schedule.layers if e["name"] == layer), None)
    if existing is not None and not _is_imported(existing):
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


# -- the final schedule ----------------------------------------------------------------------


def _range(start: dt.datetime, end: dt.datetime, limit: dt.timedelta) -> None:
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ValidationFailed.one(f"query.{name}", "give a time zone (…Z or …+01:00)")
    if end <= start:
        raise ValidationFailed.one("query.end", "the range ends after it starts")
    if end - start > limit:
        raise ValidationFailed.one("query.end", f"a range spans at most {limit.days} days")


def final(*, session: Session, schedule_id: int, start: dt.datetime, end: dt.datetime) -> FinalView:
    """Who is on call over [start, end) (at most 93 days), each layer's own shifts and the
    overrides: what a timeline draws."""
    _range(start, end, MAX_FINAL_RANGE)
    schedule = get(session=session, schedule_id=schedule_id)
    return _final_view(session, schedule, start.astimezone(dt.UTC), end.astimezone(dt.UTC))


def _final_view(
    session: Session, schedule: OnCallSchedule, start: dt.datetime, end: dt.datetime
) -> FinalView:
    layers = _compiled_of(session, schedule).layers
    overrides = tuple(_overrides(session, [schedule.id], start, end).get(schedule.id, []))
    whole = engine.Schedule(layers, overrides)
    final_shifts = engine.final_schedule(whole, start=start, end=end)
    per_layer = [
        (
            layer.name,
            "imported" if isinstance(layer, engine.FixedLayer) else "rotation",
            engine.layer_shifts(layer, start=start, end=end),
        )
        for layer in layers
    ]
    override_shifts = [
        Shift(max(o.start, start), min(o.end, end), o.user, engine.OVERRIDE_LAYER)
        for o in overrides
    ]
    everyone = {int(s.user) for s in final_shifts + override_shifts}
    everyone |= {int(s.user) for _, _, shifts in per_layer for s in shifts}
    users = people.users_by_id(session=session, ids=everyone)
    names = {user_id: user.display_name for user_id, user in users.items()}
    return FinalView(schedule, start, end, final_shifts, per_layer, override_shifts, names)


# -- who is on call ------------------------------------------------------------------------------


def _current(schedule: engine.Schedule, at: dt.datetime) -> Shift | None:
    shift = None
    for reach in NOW_REACHES:
        shift = engine.current_shift(schedule, at, reach=reach)
        if shift is None:
            return None
        if at - reach < shift.start and shift.end < at + reach:
            return shift  # not cut at the edge of what was looked at
    return shift


def on_call_user_ids(session: Session, schedule_id: int, at: dt.datetime) -> list[int]:
    """Who is on call on the schedule at ``at``: the top override, else the top layer with
    someone (a list: empty when nobody is)."""
    if at.tzinfo is None:
        raise ValidationFailed.one("at", "give a time zone (…Z or …+01:00)")
    at = at.astimezone(dt.UTC)
    updated_at = session.scalar(
        sa.select(OnCallSchedule.updated_at).where(OnCallSchedule.id == schedule_id)
    )
    if updated_at is None:
        raise NotFound(f"no on-call schedule {schedule_id}")
    layers = compiled(session, schedule_id=schedule_id, updated_at=updated_at).layers
    overrides = _overrides(session, [schedule_id], at, at + dt.timedelta(microseconds=1))
    user = engine.on_call_at(engine.Schedule(layers, tuple(overrides.get(schedule_id, []))), at)
    return [] if user is None else [int(user)]


@dataclass(frozen=True)
class _Row:
    id: int
    name: str
    updated_at: dt.datetime


# "Who is on call" is asked on every entity page and by every status widget: its reads are
# plain SQL on the driver (core/db.py driver_rows), a few small statements.
_SCHEDULES_BY = {
    "id": "SELECT id, name, updated_at FROM oncall_schedules WHERE id = ?",
    "team": "SELECT id, name, updated_at FROM oncall_schedules WHERE team_id = ? ORDER BY id",
}


def _schedule_rows(session: Session, by: str, values: Sequence[int]) -> list[_Row]:
    """The schedules with these ids (``by="id"``) or of these teams (``by="team"``), by id."""
    found = {}
    for value in dict.fromkeys(values):
        for schedule_id, name, updated_at in driver_rows(session, _SCHEDULES_BY[by], (value,)):
            found[schedule_id] = _Row(schedule_id, name, from_driver_time(updated_at))
    return [found[key] for key in sorted(found)]


def _on_call(session: Session, rows: Sequence[_Row], at: dt.datetime) -> list[tuple[_Row, Shift]]:
    reach = NOW_REACHES[-1]
    overrides = _overrides(session, [row.id for row in rows], at - reach, at + reach)
    found = []
    for row in rows:
        layers = compiled(session, schedule_id=row.id, updated_at=row.updated_at).layers
        shift = _current(engine.Schedule(layers, tuple(overrides.get(row.id, []))), at)
        if shift is not None:
            found.append((row, shift))
    return found


_DEFAULT_TIERS = (
    "SELECT tiers FROM escalation_policies WHERE team_id = {team} AND is_team_default = ?"
    " ORDER BY id LIMIT 1"
)


def _first_tier_targets(raw_tiers: Any) -> list[tuple[str, int]] | None:
    tiers = driver_json(raw_tiers) if raw_tiers is not None else None
    if not tiers or not isinstance(tiers, list):
        return None
    first = tiers[0] if isinstance(tiers[0], dict) else {}
    targets = []
    for target in first.get("targets") or []:
        kind = target.get("type") if isinstance(target, dict) else None
        if kind in {"schedule", "user", "team"} and isinstance(target.get("id"), int):
            targets.append((str(kind), int(target["id"])))
    return targets


def who_is_on_call(
    session: Session,
    *,
    schedule_id: int | None = None,
    team_id: int | None = None,
    entity_id: int | None = None,
    at: dt.datetime | None = None,
) -> list[OnCallNow]:
    """Who is on call at ``at`` (default now) on one schedule, on every schedule of a team, or
    for a catalog entity: the people the first tier of its owning team's default escalation
    policy would notify (a schedule's on-call person, a user, a team's members), or else who is
    on call on each of that team's schedules."""
    if sum(value is not None for value in (schedule_id, team_id, entity_id)) != 1:
        raise ValidationFailed.one("query", "ask about one schedule, one team or one entity")
    if at is not None and at.tzinfo is None:
        raise ValidationFailed.one("at", "give a time zone (…Z or …+01:00)")
    at = (at or utcnow()).astimezone(dt.UTC)
    if schedule_id is not None:
        rows = _schedule_rows(session, "id", [schedule_id])
        if not rows:
            raise NotFound(f"no on-call schedule {schedule_id}")
        return _present(session, _on_call(session, rows, at))
    if team_id is not None:
        rows = _schedule_rows(session, "team", [team_id])
        return _present(session, _on_call(session, rows, at))
    owner = driver_rows(  # the owning team and its default policy's tiers, in one statement
        session,
        "SELECT e.owner_team_id, ("  # noqa: S608
        + _DEFAULT_TIERS.format(team="e.owner_team_id")
        + ") FROM catalog_entities e WHERE e.id = ?",
        (True, entity_id),
    )
    if not owner:
        raise NotFound(f"no catalog entity with id {entity_id}")
    owner_team_id, raw_tiers = owner[0]
    if owner_team_id is None:
        return []
    targets = _first_tier_targets(raw_tiers)
    if targets is None:
        rows = _schedule_rows(session, "team", [owner_team_id])
        return _present(session, _on_call(session, rows, at))
    return _targets_on_call(session, targets, at)


def has_on_call(*, session: Session, team_id: int) -> bool:
    """Whether the team has an on-call schedule or a default escalation policy (so that
    "nobody is on call" is news, not the absence of any arrangement)."""
    found = session.scalar(
        sa.select(OnCallSchedule.id).where(OnCallSchedule.team_id == team_id).limit(1)
    ) or session.scalar(
        sa.select(EscalationPolicy.id)
        .where(EscalationPolicy.team_id == team_id, EscalationPolicy.is_team_default.is_(True))
        .limit(1)
    )
    return found is not None


def _targets_on_call(
    session: Session, targets: Sequence[tuple[str, int]], at: dt.datetime
) -> list[OnCallNow]:
    schedule_ids = [target_id for kind, target_id in targets if kind == "schedule"]
    rows = _schedule_rows(session, "id", schedule_ids)
    shifts = {row.id: (row, shift) for row, shift in _on_call(session, rows, at)}
    team_ids = [target_id for kind, target_id in targets if kind == "team"]
    members = people.member_ids_of(session=session, team_ids=team_ids)
    ordered: list[tuple[_Row, Shift] | int] = []
    for kind, target_id in targets:
        if kind == "schedule" and target_id in shifts:
            ordered.append(shifts[target_id])
        elif kind == "user":
            ordered.append(target_id)
        elif kind == "team":
            ordered.extend(members.get(target_id, []))
    return _present(session, ordered)


def _present(session: Session, found: Sequence[tuple[_Row, Shift] | int]) -> list[OnCallNow]:
    """Who is on call, named, in order; each (person, schedule) once. A bare user id is someone
    an escalation policy names directly (no schedule)."""
    ids = [item if isinstance(item, int) else int(item[1].user) for item in found]
    users = people.names_by_id(session=session, ids=ids)
    answer: list[OnCallNow] = []
    seen: set[tuple[int, int | None]] = set()
    for user_id, item in zip(ids, found, strict=True):
        user = users.get(user_id)
        row, shift = (None, None) if isinstance(item, int) else item
        key = (user_id, row.id if row is not None else None)
        if user is None or key in seen or (row is None and not user.is_active):
            continue  # a policy naming someone deactivated pages nobody through them
        seen.add(key)
        answer.append(
            OnCallNow(
                user_id=user.id,
                display_name=user.display_name,
                email=user.email,
                schedule_id=row.id if row is not None else None,
                schedule_name=row.name if row is not None else None,
                layer=shift.layer if shift is not None else None,
                since=shift.start if shift is not None else None,
                until=shift.end if shift is not None else None,
            )
        )
    return answer


# -- iCalendar feeds -----------------------------------------------------------------------------


def _new_feed_token() -> str:
    return FEED_PREFIX + secrets.token_urlsafe(32)


def feed_url(base_url: str, kind: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/oncall/feeds/{kind}/{token}.ics"


def rotate_feed_token(*, session: Session, actor: Actor, schedule_id: int) -> str:
    """A new secret for the schedule's feed (shown once); the old URL stops working at once."""
    schedule = get(session=session, schedule_id=schedule_id)
    _require_write(actor, schedule.team_id)
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
    view = _final_view(session, schedule, now - FEED_BACK, now + FEED_AHEAD)
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
            in compiled(session, schedule_id=schedule_id, updated_at=updated_at).participants
        ):
            candidates.add(schedule_id)
    shifts: list[Shift] = []
    for schedule_id in sorted(candidates):
        view = _final_view(session, get(session=session, schedule_id=schedule_id), start, end)
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
