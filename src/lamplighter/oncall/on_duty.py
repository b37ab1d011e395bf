"""Who is on call: on a schedule, on a team's schedules, or for a catalog entity (the first
tier of its owning team's default escalation policy). Asked on every entity page, by status
widgets and by each escalation, so its reads are plain SQL on the driver (``core/db.py``
``driver_rows``), a few small statements, and the schedules' layers come compiled from
``schedules.compiled`` (cached per process and version of the row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import people
from lamplighter.core.db import driver_json, driver_rows, from_driver_time, utcnow
from lamplighter.core.errors import (
    NotFound,
    ValidationFailed,
)
from lamplighter.oncall import schedule as engine
from lamplighter.oncall import schedules
from lamplighter.oncall.models import (
    EscalationPolicy,
    OnCallSchedule,
)
from lamplighter.oncall.shifts import Shift

# How far around T "since when, until when" is looked for: a day answers almost every schedule
# at once; a weekly turn needs eight; longer turns (or an override of months) the last, and a
# stretch longer still is shown cut at 64 days.
NOW_REACHES = (dt.timedelta(days=1), dt.timedelta(days=8), dt.timedelta(days=64))


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
    layers = schedules.compiled(session, schedule_id=schedule_id, updated_at=updated_at).layers
    overrides = schedules.overrides_meeting(
        session, [schedule_id], at, at + dt.timedelta(microseconds=1)
    )
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
    overrides = schedules.overrides_meeting(
        session, [row.id for row in rows], at - reach, at + reach
    )
    found = []
    for row in rows:
        layers = schedules.compiled(session, schedule_id=row.id, updated_at=row.updated_at).layers
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
