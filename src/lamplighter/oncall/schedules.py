"""On-call schedules: define them, override them, and read their final shifts. Shifts imported
from iCalendar and the feeds are in ``oncall.calendars``; who is on call in ``oncall.on_duty``.
Everything else (API, CLI, feeds, panels, escalations) calls these.

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
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit, people
from lamplighter.core.authz import can_write_owned, require_owned_write
from lamplighter.core.context import Actor
from lamplighter.core.db import driver_rows, driver_time, from_driver_time, utcnow
from lamplighter.core.errors import (
    Conflict,
    FieldError,
    NotFound,
    ValidationFailed,
)
from lamplighter.core.models import Team, User
from lamplighter.core.pagination import keyset
from lamplighter.oncall import schedule as engine
from lamplighter.oncall.models import (
    EscalationPolicy,
    OnCallImportedShift,
    OnCallOverride,
    OnCallSchedule,
)
from lamplighter.oncall.schedule_schemas import (
    LayerIn,
    OverrideCreate,
    RestrictionIn,
    ScheduleCreate,
    ScheduleUpdate,
)
from lamplighter.oncall.shifts import Shift

OBJECT_TYPE = "oncall_schedule"
MAX_FINAL_RANGE = dt.timedelta(days=93)


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


def is_imported(entry: dict[str, Any]) -> bool:
    return entry.get("kind") == "imported"


def _compile(
    layers: Sequence[dict[str, Any]], time_zone: str, imported: dict[str, list[Shift]]
) -> Compiled:
    compiled: list[engine.AnyLayer] = []
    participants: set[int] = set()
    for entry in layers:
        if is_imported(entry):
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
    require_team_write(actor, schedule.team_id)
    return schedule


def require_team_write(actor: Actor, team_id: int, team_slug: str | None = None) -> None:
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
        if not is_imported(entry)
        for version in entry["versions"]
        for user_id in version["participants"]
    }
    users = people.users_by_id(session=session, ids=wanted)
    errors: list[FieldError] = []
    for i, entry in enumerate(layers):
        if is_imported(entry):
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
            entry = dict(kept) if kept and is_imported(kept) else {"name": layer.name}
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
    require_team_write(actor, team.id, team.slug)
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
    require_team_write(actor, schedule.team_id)
    before = snapshot(schedule)
    team_id = schedule.team_id
    if data.team is not None:
        team = team_by_slug(session=session, slug=data.team, field="body.team")
        require_team_write(actor, team.id, team.slug)
        team_id = team.id
    name = data.name if data.name is not None else schedule.name
    time_zone = data.time_zone if data.time_zone is not None else schedule.time_zone
    layers = schedule.layers
    if data.layers is not None:
        layers = _stored_layers(session, data.layers, time_zone=time_zone, current=schedule.layers)
    elif time_zone != schedule.time_zone:
        # Versions without a zone of their own follow the schedule's: check them in the new one.
        for index, entry in enumerate(layers):
            if not is_imported(entry):
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
    kept = {entry["name"] for entry in layers if is_imported(entry)}
    dropped = [e["name"] for e in schedule.layers if is_imported(e) and e["name"] not in kept]
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
    require_team_write(actor, schedule.team_id)
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
    require_team_write(actor, schedule.team_id)
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
    require_team_write(actor, schedule.team_id)
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


def overrides_meeting(
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
    return final_view(session, schedule, start.astimezone(dt.UTC), end.astimezone(dt.UTC))


def final_view(
    session: Session, schedule: OnCallSchedule, start: dt.datetime, end: dt.datetime
) -> FinalView:
    layers = _compiled_of(session, schedule).layers
    overrides = tuple(overrides_meeting(session, [schedule.id], start, end).get(schedule.id, []))
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
