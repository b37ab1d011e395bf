"""Escalation: from an alert group to the people who must hear about it, tier after tier.

On-call reacts to the alerting domain's events (manifest ``subscriptions``):

- ``alert.group_triggered`` → ``oncall.escalation_start``: the group's policy (the routing
  rules' choice, else the team's default; without one, the whole owning team) is looked up and
  its first tier runs at once;
- a tier (:func:`run_tier`) resolves its targets now — who is on call on each schedule, the
  users named, the members of a team — and enqueues one ``oncall.notify`` job per person and
  notification rule ("immediately by Slack, after 5 minutes by email"), keyed
  ``notify:<group>:<round>.<tier>:<user>:<method>``: a tier run twice (a retried job, two
  workers, a restart) notifies nobody twice. It then schedules the next tier (its delay) or the
  next round (``repeat``), keyed ``escalate:<group>:<round>.<tier>``;
- ``oncall.escalation_step`` runs that tier when due, unless the group was acknowledged or
  resolved meanwhile, or someone escalated by hand past it (the escalation row remembers the
  last tier run: a step is run only if it is that tier's successor);
- ``alert.integration_deleted`` → ``oncall.forget_groups``: the escalations and delivery log
  of groups that are gone (those rows carry no foreign key to cascade by; migration 0014);
- ``alert.group_escalated`` runs the next tier at once; ``alert.group_reassigned`` notifies the
  new assignee at once; acknowledged and resolved groups stop (``state``).

``oncall.notify`` (``notify.py``) hands one notification to its channel.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from lamplighter.alerting import service as alerting
from lamplighter.core import events, jobs, people
from lamplighter.core.db import utcnow
from lamplighter.core.settings import Settings
from lamplighter.oncall import channels, contacts, on_duty, policies
from lamplighter.oncall.models import Delivery, Escalation, EscalationPolicy

log = logging.getLogger("lamplighter.oncall.escalation")

START = "oncall.escalation_start"
STEP = "oncall.escalation_step"
ESCALATE_NOW = "oncall.escalate_now"
REASSIGNED = "oncall.reassigned"
STOP = "oncall.escalation_stop"
FORGET = "oncall.forget_groups"
NOTIFY = "oncall.notify"
# The in-app inbox is a database write: its jobs run many to a transaction (batch_safe).
NOTIFY_INBOX = "oncall.notify_inbox"

ACTIVE, STOPPED, DONE = "active", "stopped", "done"


@dataclass(frozen=True)
class Tier:
    name: str
    delay_minutes: int
    targets: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Plan:
    """The tiers an escalation walks, and how many more times it walks them."""

    policy_id: int | None
    tiers: tuple[Tier, ...]
    repeat: int


def memo(session: Session, name: str) -> dict[Any, Any]:
    """A cache that lives as long as the transaction: a worker runs up to a batch of
    escalation jobs in one transaction (batch_safe), mostly of the same few policies, schedules
    and people, and each is read once per batch instead of once per escalation. Nothing is
    cached across transactions."""
    caches: dict[str, dict[Any, Any]] = session.info.setdefault("oncall.memo", {})
    return caches.setdefault(name, {})


def _forget_memo(session: Session, *_: object) -> None:
    session.info.pop("oncall.memo", None)
    session.info.pop("oncall.unflushed_inbox", None)


for _event in ("after_commit", "after_rollback", "after_soft_rollback"):
    sa.event.listen(Session, _event, _forget_memo)


def plan_for(session: Session, group: alerting.AlertGroup) -> Plan:
    plans = memo(session, "plans")
    key = (group.policy_id, group.team_id)
    if key not in plans:
        plans[key] = _plan(session, group)
    plan: Plan = plans[key]
    return plan


def _plan(session: Session, group: alerting.AlertGroup) -> Plan:
    policy: EscalationPolicy | None = None
    policy_id = group.policy_id or policies.default_policy_id(session, group.team_id)
    if policy_id is not None:
        policy = session.get(EscalationPolicy, policy_id)
    if policy is None or not policy.tiers:
        # No policy: the owning team hears about it, once.
        return Plan(
            policy_id=None,
            tiers=(Tier("Owning team", 0, ({"type": "team", "id": group.team_id},)),),
            repeat=0,
        )
    tiers = tuple(
        Tier(
            name=str(tier.get("name") or f"Tier {index + 1}"),
            delay_minutes=int(tier.get("delay_minutes") or 0),
            targets=tuple(tier.get("targets") or ()),
        )
        for index, tier in enumerate(policy.tiers)
    )
    return Plan(policy_id=policy.id, tiers=tiers, repeat=policy.repeat)


def successor(plan: Plan, tier: int, round_: int) -> tuple[int, int] | None:
    if tier + 1 < len(plan.tiers):
        return tier + 1, round_
    if round_ < plan.repeat:
        return 0, round_ + 1
    return None


def targets_now(
    session: Session, targets: tuple[dict[str, Any], ...], at: dt.datetime
) -> list[int]:
    """The people a tier's targets stand for at ``at``, each once, in the order named."""
    found: list[int] = []
    on_call, members, active = (
        memo(session, "on_call"),
        memo(session, "members"),
        memo(session, "active"),
    )
    team_ids = [int(t["id"]) for t in targets if t.get("type") == "team"]
    missing = [team_id for team_id in team_ids if team_id not in members]
    if missing:
        fetched = people.member_ids_of(session=session, team_ids=missing)
        for team_id in missing:
            members[team_id] = fetched.get(team_id, [])
    for target in targets:
        kind, target_id = target.get("type"), int(target.get("id", 0))
        if kind == "schedule":
            if (target_id, at) not in on_call:  # a batch asks at one time (batch_now)
                on_call[(target_id, at)] = on_duty.on_call_user_ids(session, target_id, at)
            found.extend(on_call[(target_id, at)])
        elif kind == "user":
            found.append(target_id)
        elif kind == "team":
            found.extend(members.get(target_id, []))
    unknown = [uid for uid in found if uid not in active]
    if unknown:
        named = people.names_by_id(session=session, ids=unknown)
        for uid in unknown:
            active[uid] = uid in named and named[uid].is_active
    return [uid for uid in dict.fromkeys(found) if active[uid]]


def _insert(session: Session, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def notify_jobs(
    session: Session,
    *,
    group_id: int,
    users: list[int],
    stage: str,
    tier: int,
    round_: int,
    now: dt.datetime,
    tier_name: str = "",
) -> list[dict[str, Any]]:
    """One ``oncall.notify`` job per person and notification rule, keyed so it runs once."""
    rows: list[dict[str, Any]] = []
    rules_memo = memo(session, "rules")
    for user_id in users:
        if user_id not in rules_memo:
            rules_memo[user_id] = contacts.effective_rules(session, user_id)
        for position, (delay, method) in enumerate(rules_memo[user_id]):
            method_key = str(method.id) if method is not None else "inbox"
            rows.append(
                {
                    "kind": NOTIFY if method is not None else NOTIFY_INBOX,
                    "payload": {
                        "group_id": group_id,
                        "user_id": user_id,
                        "method_id": method.id if method is not None else None,
                        "tier": tier,
                        "round": round_,
                        "stage": stage,
                        "tier_name": tier_name,
                        "rule": position,
                    },
                    "idempotency_key": f"notify:{group_id}:{stage}:{user_id}:{method_key}",
                    "due_at": now + dt.timedelta(minutes=delay),
                }
            )
    return rows


def enqueue_all(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if jobs.in_batch(session):
        memo(session, "deferred_jobs").setdefault("rows", []).extend(rows)
        return
    jobs.enqueue_keyed(session=session, jobs=rows)


def batch_now(session: Session) -> dt.datetime:
    """Now, once per transaction: the escalations a batch starts are started at one time, so
    who is on call is asked once per schedule (a batch takes well under a second)."""
    clock = memo(session, "now")
    if "now" not in clock:
        clock["now"] = utcnow()
    now: dt.datetime = clock["now"]
    return now


def _log(session: Session, entries: list[dict[str, Any]]) -> None:
    if jobs.in_batch(session):
        stamped = [{"at": utcnow(), **entry} for entry in entries]
        memo(session, "deferred_log").setdefault("rows", []).extend(stamped)
        return
    alerting.log_entries(session, entries)


@jobs.batch_prepare
def read_ahead(session: Session, batch: list[jobs.Claimed]) -> None:
    """The groups and escalation rows a batch's escalation jobs will read, in two queries (the
    memo keeps them referenced, so the session's identity map answers ``get`` without SQL)."""
    ids: set[int] = set()
    for job in batch:
        try:
            if job.kind in (START, ESCALATE_NOW, REASSIGNED, STOP):
                ids.add(int(job.payload["payload"]["id"]))
            elif job.kind == STEP:
                ids.add(int(job.payload["group_id"]))
        except (KeyError, TypeError, ValueError):
            continue  # the handler itself says what is wrong with its job
    if not ids:
        return
    query = sa.select(Escalation).where(Escalation.group_id.in_(sorted(ids)))
    if session.get_bind().dialect.name == "postgresql":
        # A batch reads a few hundred rows by key. In a storm the tables grow a hundredfold
        # before autovacuum analyses them again, and planned by the last (small) statistics
        # these lookups scanned the whole table (as the intake's did: alerting/store.py).
        session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        query = query.with_for_update()
    memo(session, "groups")["read ahead"] = alerting.get_many(session, ids)
    known = memo(session, "escalations")
    known.update(dict.fromkeys(ids))
    for escalation in session.scalars(query):
        known[escalation.group_id] = escalation


@jobs.batch_flush
def flush_deferred(session: Session) -> None:
    """Write what a batch of escalation jobs deferred: the escalation rows in one statement,
    the notification and step jobs in one, the timeline entries in one. Run by the worker
    after the batch's handlers, and before any read of an escalation row deferred."""
    states = memo(session, "deferred_states")
    if states:
        rows = list(states.values())
        states.clear()
        known = memo(session, "escalations")
        for row in rows:  # read ahead before these were written: read them again
            known.pop(row["group_id"], None)
        statement = _insert(session, Escalation.__table__)  # Core: no ORM bulk machinery
        statement = statement.on_conflict_do_update(
            index_elements=["group_id"],
            set_={k: getattr(statement.excluded, k) for k in rows[0] if k != "group_id"},
        )
        session.execute(statement, rows)
    pending_jobs = memo(session, "deferred_jobs").pop("rows", None)
    if pending_jobs:
        jobs.enqueue_keyed(session=session, jobs=pending_jobs)
    entries = memo(session, "deferred_log").pop("rows", None)
    if entries:
        alerting.log_entries(session, entries)
    pairs = memo(session, "deferred_inbox").pop("pairs", None)
    if pairs:
        session.add_all([item for item, _ in pairs])
        session.flush()  # the inbox items, in one INSERT: their ids are now known
        for item, delivery in pairs:
            delivery.error = channels.inbox_result(item)[:2000]
        session.add_all([delivery for _, delivery in pairs])


def run_tier(
    session: Session,
    group: alerting.AlertGroup,
    plan: Plan,
    *,
    tier: int,
    round_: int,
    now: dt.datetime,
    why: str,
    settings: Settings | None = None,
) -> None:
    """Notify a tier's people now and schedule what follows.

    The in-app inbox of each person, due at once, is written here, in this transaction: the
    tier runs once (the escalation row says which tier ran last), so its inbox items do too,
    and the first notification needs no second trip through the queue. The other methods are
    jobs of their own (they talk to the outside world and are retried on their own)."""
    spec = plan.tiers[tier]
    users = targets_now(session, spec.targets, now)
    if group.assignee_user_id is not None and group.assignee_user_id not in users:
        users.insert(0, group.assignee_user_id)
    stage = f"{round_}.{tier}"
    rows = notify_jobs(
        session,
        group_id=group.id,
        users=users,
        stage=stage,
        tier=tier,
        round_=round_,
        now=now,
        tier_name=spec.name,
    )
    if settings is not None:
        from lamplighter.oncall import notify  # notify imports this module's job kinds

        inline = [row for row in rows if row["kind"] == NOTIFY_INBOX and row["due_at"] <= now]
        rows = [row for row in rows if row not in inline]
        for row in inline:
            notify.deliver_inbox(session, settings, group, row["payload"])
    following = successor(plan, tier, round_)
    next_at = now + dt.timedelta(minutes=spec.delay_minutes) if following else None
    if following is not None and next_at is not None:
        next_tier, next_round = following
        rows.append(
            {
                "kind": STEP,
                "payload": {"group_id": group.id, "tier": next_tier, "round": next_round},
                "idempotency_key": f"escalate:{group.id}:{next_round}.{next_tier}",
                "due_at": next_at,
            }
        )
    enqueue_all(session, rows)
    _set_state(
        session,
        group.id,
        policy_id=plan.policy_id,
        tier=tier,
        round_=round_,
        state=ACTIVE if following else DONE,
        next_at=next_at,
    )
    entries: list[dict[str, Any]] = [
        {
            "group_id": group.id,
            "what": "escalated" if (tier, round_) != (0, 0) else "tier",
            "actor_user_id": None,
            "detail": {
                "tier": tier + 1,
                "tier_name": spec.name,
                "round": round_ + 1,
                "why": why,
                "people": len(users),
            },
        }
    ]
    entries.extend(
        {
            "group_id": group.id,
            "what": "notified",
            "actor_user_id": user_id,
            "detail": {"tier": tier + 1, "tier_name": spec.name, "round": round_ + 1},
        }
        for user_id in users
    )
    if not users:
        entries.append(
            {
                "group_id": group.id,
                "what": "nobody",
                "actor_user_id": None,
                "detail": {"tier": tier + 1, "tier_name": spec.name, "why": "nobody on call"},
            }
        )
    _log(session, entries)


def _set_state(
    session: Session,
    group_id: int,
    *,
    policy_id: int | None,
    tier: int,
    round_: int,
    state: str,
    next_at: dt.datetime | None,
) -> None:
    values = {
        "group_id": group_id,
        "policy_id": policy_id,
        "tier": tier,
        "round": round_,
        "state": state,
        "next_at": next_at,
        "updated_at": utcnow(),
    }
    if jobs.in_batch(session):
        memo(session, "deferred_states")[group_id] = values
        return
    statement = _insert(session, Escalation).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["group_id"],
        set_={k: v for k, v in values.items() if k != "group_id"},
    )
    session.execute(statement)


def _escalation(session: Session, group_id: int, *, lock: bool = True) -> Escalation | None:
    if group_id in memo(session, "deferred_states"):
        flush_deferred(session)  # this batch changed it: write the batch's changes first
    known = memo(session, "escalations")
    if group_id in known:  # read ahead for the batch (and locked, on PostgreSQL)
        found: Escalation | None = known[group_id]
        return found
    query = sa.select(Escalation).where(Escalation.group_id == group_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalar(query)


def _open_group(session: Session, group_id: int) -> alerting.AlertGroup | None:
    try:
        group = alerting.get(session, group_id)
    except Exception:  # the group is gone (its integration was deleted)
        return None
    return group


# -- handlers -------------------------------------------------------------------------------
@jobs.handler(START, batch_safe=True)
def on_triggered(ctx: jobs.JobContext) -> None:
    event = events.delivered(ctx)
    group = _open_group(ctx.session, int(event.payload["id"]))
    if group is None or group.status != alerting.AlertStatus.TRIGGERED.value:
        return
    if _escalation(ctx.session, group.id) is not None:  # started already (a retried job)
        return
    run_tier(
        ctx.session,
        group,
        plan_for(ctx.session, group),
        tier=0,
        round_=0,
        now=batch_now(ctx.session),
        why="triggered",
        settings=ctx.settings,
    )


@jobs.handler(STEP, batch_safe=True)
def on_step(ctx: jobs.JobContext) -> None:
    group_id, tier, round_ = (int(ctx.payload[k]) for k in ("group_id", "tier", "round"))
    group = _open_group(ctx.session, group_id)
    escalation = _escalation(ctx.session, group_id)
    if group is None or escalation is None or escalation.state != ACTIVE:
        return
    if group.status != alerting.AlertStatus.TRIGGERED.value:
        escalation.state = STOPPED
        return
    plan = plan_for(ctx.session, group)
    if successor(plan, escalation.tier, escalation.round) != (tier, round_):
        return  # escalated by hand past this tier, or the policy changed: not this step's turn
    if tier >= len(plan.tiers):
        return
    run_tier(
        ctx.session,
        group,
        plan,
        tier=tier,
        round_=round_,
        now=batch_now(ctx.session),
        why="no acknowledgement",
        settings=ctx.settings,
    )


@jobs.handler(ESCALATE_NOW, batch_safe=True)
def on_escalated(ctx: jobs.JobContext) -> None:
    event = events.delivered(ctx)
    group = _open_group(ctx.session, int(event.payload["id"]))
    if group is None or group.status == alerting.AlertStatus.RESOLVED.value:
        return
    plan = plan_for(ctx.session, group)
    escalation = _escalation(ctx.session, group.id)
    if escalation is None:
        run_tier(
            ctx.session,
            group,
            plan,
            tier=0,
            round_=0,
            now=utcnow(),
            why="escalated by hand",
            settings=ctx.settings,
        )
        return
    following = successor(plan, escalation.tier, escalation.round)
    if following is None:  # past the last tier: the last tier hears again
        following = (len(plan.tiers) - 1, escalation.round + 1)
    tier, round_ = following
    run_tier(
        ctx.session,
        group,
        plan,
        tier=min(tier, len(plan.tiers) - 1),
        round_=round_,
        now=utcnow(),
        why="escalated by hand",
        settings=ctx.settings,
    )


@jobs.handler(REASSIGNED, batch_safe=True)
def on_reassigned(ctx: jobs.JobContext) -> None:
    event = events.delivered(ctx)
    group = _open_group(ctx.session, int(event.payload["id"]))
    if group is None or group.status == alerting.AlertStatus.RESOLVED.value:
        return
    to_user = int(event.payload["to_user_id"])
    escalation = _escalation(ctx.session, group.id)
    tier = escalation.tier if escalation else 0
    round_ = escalation.round if escalation else 0
    now = utcnow()
    enqueue_all(
        ctx.session,
        notify_jobs(
            ctx.session,
            group_id=group.id,
            users=[to_user],
            stage=f"reassign{event.id}",
            tier=tier,
            round_=round_,
            now=now,
        ),
    )
    alerting.log_entries(
        ctx.session,
        [
            {
                "group_id": group.id,
                "what": "notified",
                "actor_user_id": to_user,
                "detail": {"why": "reassigned"},
            }
        ],
    )


@jobs.handler(STOP, batch_safe=True)
def on_stopped(ctx: jobs.JobContext) -> None:
    event = events.delivered(ctx)
    escalation = _escalation(ctx.session, int(event.payload["id"]))
    if escalation is not None and escalation.state == ACTIVE:
        escalation.state = STOPPED
        escalation.next_at = None


@jobs.handler(FORGET)
def on_integration_deleted(ctx: jobs.JobContext) -> None:
    """The escalation rows and delivery log of alert groups deleted with their integration
    (any group gone: a job that failed earlier is caught up by the next one)."""
    for model in (Escalation, Delivery):
        gone = ~sa.exists().where(alerting.AlertGroup.id == model.group_id)
        ctx.session.execute(
            sa.delete(model).where(gone).execution_options(synchronize_session=False)
        )
