"""Escalation policies: who is told about an alert group, in which order, and how often.

A policy belongs to a team and is a chain of tiers. Each tier notifies its targets (whoever is
on call in a schedule, a person, or every member of a team), then waits ``delay_minutes`` for an
acknowledgement before the next tier; after the last tier's wait the chain starts again, up to
``repeat`` more times. An acknowledgement stops it. The escalation runtime reads these rows; this
module only defines them::

    create(session=session, actor=actor, team_id=payments.id, name="Payments", tiers=[
        {"name": "Frontline", "delay_minutes": 10, "targets": [{"type": "schedule", "id": 3}]},
        {"name": "Application SRE", "delay_minutes": 15, "targets": [{"type": "team", "id": 7}]},
    ], repeat=2)

The team's members, SREs and admins change a policy; everyone signed in reads it. One policy per
team may be the team's default (where its alerts go when no route names a policy); the first
policy a team gets is its default unless told otherwise. Every change is audited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit, people
from lamplighter.core.authz import require_owned_write
from lamplighter.core.context import Actor
from lamplighter.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from lamplighter.core.models import Team
from lamplighter.core.pagination import keyset
from lamplighter.oncall.models import EscalationPolicy, OnCallSchedule
from lamplighter.oncall.people_schemas import MAX_REPEAT, MAX_TIERS, TierIn

OBJECT_TYPE = "escalation_policy"
_TIERS = pydantic.TypeAdapter(list[TierIn])


def snapshot(policy: EscalationPolicy) -> dict[str, Any]:
    return {
        "team_id": policy.team_id,
        "name": policy.name,
        "description": policy.description,
        "tiers": policy.tiers,
        "repeat": policy.repeat,
        "is_team_default": policy.is_team_default,
    }


# -- reading ---------------------------------------------------------------------------------------
def get(session: Session, policy_id: int) -> EscalationPolicy:
    """The policy with this id; a 404 problem when there is none."""
    policy = session.get(EscalationPolicy, policy_id)
    if policy is None:
        raise NotFound(f"no escalation policy {policy_id}")
    return policy


def default_policy_id(session: Session, team_id: int) -> int | None:
    """The id of the team's default policy, or None when the team has none."""
    # The oldest one, should two writers each have made one the default at the same moment.
    found = session.scalar(
        sa.select(EscalationPolicy.id)
        .where(EscalationPolicy.team_id == team_id, EscalationPolicy.is_team_default.is_(True))
        .order_by(EscalationPolicy.id)
        .limit(1)
    )
    return int(found) if found is not None else None


def list_(
    *, session: Session, after_id: int | None, limit: int, team_id: int | None = None
) -> list[EscalationPolicy]:
    """Policies in id order after a cursor's position, optionally of one team."""
    query = sa.select(EscalationPolicy)
    if team_id is not None:
        query = query.where(EscalationPolicy.team_id == team_id)
    return list(session.scalars(keyset(query, EscalationPolicy.id, position=after_id, limit=limit)))


def team_of(session: Session, policy: EscalationPolicy) -> Team:
    team = people.find_team(session=session, team_id=policy.team_id)
    assert team is not None  # the foreign key cascades
    return team


def team_by_slug(*, session: Session, slug: str, field: str = "body.team") -> Team:
    """The team a policy is for, named by slug; a field problem when there is none."""
    team = people.find_team_by_slug(session=session, slug=slug)
    if team is None:
        raise ValidationFailed.one(field, f"no team {slug!r}")
    return team


def read(session: Session, policy: EscalationPolicy, team: Team | None = None) -> dict[str, Any]:
    """The policy as the API answers it (``EscalationPolicyRead``)."""
    return {
        "id": policy.id,
        "team": (team or team_of(session, policy)).slug,
        "team_id": policy.team_id,
        "name": policy.name,
        "description": policy.description,
        "tiers": policy.tiers,
        "repeat": policy.repeat,
        "is_team_default": policy.is_team_default,
        "created_at": policy.created_at,
        "updated_at": policy.updated_at,
    }


def read_many(session: Session, policies: Sequence[EscalationPolicy]) -> list[dict[str, Any]]:
    """:func:`read` for a page of policies, their teams fetched in one query."""
    teams = people.teams_by_id(session=session, ids=(policy.team_id for policy in policies))
    return [read(session, policy, teams[policy.team_id]) for policy in policies]


# -- validation ------------------------------------------------------------------------------------
def _pydantic_errors(exc: pydantic.ValidationError, prefix: str) -> list[FieldError]:
    return [
        FieldError(".".join([prefix, *(str(part) for part in error["loc"])]), error["msg"])
        for error in exc.errors()
    ]


def _failed(errors: list[FieldError]) -> ValidationFailed:
    return ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors[:5]), errors=errors)


def check_tiers(
    session: Session, tiers: Sequence[Mapping[str, Any] | TierIn]
) -> list[dict[str, Any]]:
    """The tiers as stored, each target checked to exist; every problem names its field
    (``body.tiers.1.targets.0.id``)."""
    raw = [tier.model_dump() if isinstance(tier, TierIn) else dict(tier) for tier in tiers]
    if not 1 <= len(raw) <= MAX_TIERS:
        raise ValidationFailed.one("body.tiers", f"give between 1 and {MAX_TIERS} tiers")
    try:
        parsed = _TIERS.validate_python(raw)
    except pydantic.ValidationError as exc:
        raise _failed(_pydantic_errors(exc, "body.tiers")) from None
    wanted: dict[str, set[int]] = {"schedule": set(), "user": set(), "team": set()}
    for tier in parsed:
        for target in tier.targets:
            wanted[target.type].add(target.id)
    found = _existing_targets(session, wanted)
    errors: list[FieldError] = []
    for tier_index, tier in enumerate(parsed):
        seen: set[tuple[str, int]] = set()
        for target_index, target in enumerate(tier.targets):
            field = f"body.tiers.{tier_index}.targets.{target_index}"
            if (target.type, target.id) in seen:
                errors.append(FieldError(field, f"{target.type} {target.id} is listed twice"))
            elif target.id not in found[target.type]:
                reason = {
                    "schedule": f"no on-call schedule with id {target.id}",
                    "user": f"no active user with id {target.id}",
                    "team": f"no team with id {target.id}",
                }[target.type]
                errors.append(FieldError(f"{field}.id", reason))
            seen.add((target.type, target.id))
    if errors:
        raise _failed(errors)
    return [
        {
            "name": tier.name.strip() or f"Tier {index + 1}",
            "delay_minutes": tier.delay_minutes,
            "targets": [{"type": t.type, "id": t.id} for t in tier.targets],
        }
        for index, tier in enumerate(parsed)
    ]


def _existing_targets(session: Session, wanted: dict[str, set[int]]) -> dict[str, set[int]]:
    schedules = (
        set(
            session.scalars(
                sa.select(OnCallSchedule.id).where(OnCallSchedule.id.in_(wanted["schedule"]))
            )
        )
        if wanted["schedule"]
        else set()
    )
    users = people.users_by_id(session=session, ids=wanted["user"])
    teams = people.teams_by_id(session=session, ids=wanted["team"])
    return {
        "schedule": schedules,
        "user": {user_id for user_id, user in users.items() if user.is_active},
        "team": set(teams),
    }


def _check_name(session: Session, team_id: int, name: str, policy_id: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise ValidationFailed.one("body.name", "must not be empty")
    if len(name) > 100:
        raise ValidationFailed.one("body.name", "must be at most 100 characters")
    clash = session.scalar(
        sa.select(EscalationPolicy.id).where(
            EscalationPolicy.team_id == team_id, EscalationPolicy.name == name
        )
    )
    if clash is not None and clash != policy_id:
        raise Conflict(
            f"the team has an escalation policy named {name!r} already",
            errors=[FieldError("body.name", "taken by another policy of the team")],
        )
    return name


def _check_repeat(repeat: int) -> int:
    if isinstance(repeat, bool) or not 0 <= repeat <= MAX_REPEAT:
        raise ValidationFailed.one("body.repeat", f"must be between 0 and {MAX_REPEAT}")
    return repeat


def _check_description(description: str) -> str:
    if len(description) > 2000:
        raise ValidationFailed.one("body.description", "must be at most 2000 characters")
    return description.strip()


def _become_default(session: Session, policy: EscalationPolicy) -> None:
    """Make ``policy`` its team's default, clearing the flag on the team's others."""
    session.execute(
        sa.update(EscalationPolicy)
        .where(
            EscalationPolicy.team_id == policy.team_id,
            EscalationPolicy.id != policy.id,
            EscalationPolicy.is_team_default.is_(True),
        )
        .values(is_team_default=False)
        .execution_options(synchronize_session="fetch")
    )
    policy.is_team_default = True


# -- writing ---------------------------------------------------------------------------------------
def create(
    *,
    session: Session,
    actor: Actor,
    team_id: int,
    name: str,
    tiers: Sequence[Mapping[str, Any] | TierIn],
    repeat: int = 0,
    description: str = "",
    is_team_default: bool | None = None,
) -> EscalationPolicy:
    """Define a policy for a team. Unless ``is_team_default`` says otherwise, the team's first
    policy becomes its default."""
    team = people.find_team(session=session, team_id=team_id)
    if team is None:
        raise ValidationFailed.one("body.team", f"no team with id {team_id}")
    require_owned_write(actor, team.id, f"the escalation policies of team {team.slug}")
    policy = EscalationPolicy(
        team_id=team.id,
        name=_check_name(session, team.id, name),
        description=_check_description(description),
        tiers=check_tiers(session, tiers),
        repeat=_check_repeat(repeat),
        is_team_default=False,
    )
    if is_team_default is None:
        is_team_default = default_policy_id(session, team.id) is None
    session.add(policy)
    session.flush()
    if is_team_default:
        _become_default(session, policy)
        session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="escalation_policy.create",
        object_type=OBJECT_TYPE,
        object_id=policy.id,
        after=snapshot(policy),
    )
    return policy


def update(
    *,
    session: Session,
    actor: Actor,
    policy_id: int,
    name: str | None = None,
    description: str | None = None,
    tiers: Sequence[Mapping[str, Any] | TierIn] | None = None,
    repeat: int | None = None,
    is_team_default: bool | None = None,
) -> EscalationPolicy:
    """Change what is given; nothing changes when any of it is refused."""
    policy = get(session, policy_id)
    require_owned_write(actor, policy.team_id, "this escalation policy")
    before = snapshot(policy)
    # Everything is checked before anything is written, so a refusal leaves the row as it was.
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = _check_name(session, policy.team_id, name, policy.id)
    if description is not None:
        values["description"] = _check_description(description)
    if tiers is not None:
        values["tiers"] = check_tiers(session, tiers)
    if repeat is not None:
        values["repeat"] = _check_repeat(repeat)
    for key, value in values.items():
        setattr(policy, key, value)
    if is_team_default is True:
        _become_default(session, policy)
    elif is_team_default is False:
        policy.is_team_default = False
    session.flush()
    after = snapshot(policy)
    if after != before:
        audit.record(
            session=session,
            actor=actor,
            action="escalation_policy.update",
            object_type=OBJECT_TYPE,
            object_id=policy.id,
            before=before,
            after=after,
        )
    return policy


def delete(*, session: Session, actor: Actor, policy_id: int) -> None:
    """Remove a policy; escalations running on it stop having one (the runtime decides)."""
    policy = get(session, policy_id)
    require_owned_write(actor, policy.team_id, "this escalation policy")
    before = snapshot(policy)
    session.delete(policy)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="escalation_policy.delete",
        object_type=OBJECT_TYPE,
        object_id=policy_id,
        before=before,
    )
