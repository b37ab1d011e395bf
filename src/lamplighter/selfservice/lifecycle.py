"""A run's life, in one place: every status change and what announces it.

    requested ─┬─> queued ──> started ──┬─> succeeded
               │     ^                  ├─> failed ──> retried ──> queued ...
               │     │                  └─> awaiting decision ─┬─> approved ──> queued
               │     │                                         └─> rejected
               └─> awaiting approval ─┬─> approved ──> queued
                                      └─> rejected

A dry run goes the same way without approvals; its inbox items say it was a dry run.

Each change is told three ways by :func:`announce`: an audit entry (``selfservice.run.<action>``,
the names the audit log has always used), an event ``selfservice.run.<outcome>`` (typed by
``event_types.RunChanged``) and, where the requester waits for news, their inbox. The use cases
(:mod:`runs`) and the job (:mod:`runner`) change a run's fields and call :func:`announce`; no
other code writes a run's status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from lamplighter.core import audit, events, inbox
from lamplighter.core.context import Actor
from lamplighter.selfservice.event_types import RUN_OUTCOMES, RunChanged
from lamplighter.selfservice.models import Run

OBJECT_TYPE = "selfservice_run"


@dataclass(frozen=True)
class Outcome:
    audit_action: str
    inbox_title: str | None  # None: the requester is not told (they caused it, or it is routine)
    dry_title: str | None = None  # the title for a dry run, when it differs


OUTCOMES: dict[str, Outcome] = {
    "requested": Outcome("start", None),
    "approved": Outcome("approve", "Your run {id} of {title} was approved"),
    "rejected": Outcome("reject", "Your run {id} of {title} was rejected"),
    "retried": Outcome("retry", None),
    "started": Outcome("running", None),
    "succeeded": Outcome(
        "succeeded",
        "Your run {id} of {title} succeeded",
        "Dry run {id} of {title} passed: nothing was created",
    ),
    "failed": Outcome(
        "failed", "Your run {id} of {title} failed", "Dry run {id} of {title} found a problem"
    ),
    "awaiting_decision": Outcome("await_decision", "Your run {id} of {title} waits for a decision"),
}
assert set(OUTCOMES) == set(RUN_OUTCOMES), "every outcome has an event type"


def snapshot(run: Run) -> dict[str, Any]:
    return {
        "template_id": run.template_id,
        "template_version": run.template_version,
        "status": run.status,
        "dry_run": run.dry_run,
        "requester_user_id": run.requester_user_id,
        "requesting_team_id": run.requesting_team_id,
        "approver_user_id": run.approver_user_id,
        "decision_reason": run.decision_reason,
        "error": run.error,
        "failed_step": run.failed_step,
        "ticket_id": run.ticket_id,
    }


def announce(
    session: Session,
    actor: Actor,
    run: Run,
    outcome: str,
    before: dict[str, Any] | None,
    *,
    body: str = "",
    audit_extra: dict[str, Any] | None = None,
) -> None:
    """Tell a run's change: audit entry, event, and the requester's inbox for the outcomes
    they wait for (with ``body``: the error of a failed run, the reason of a rejected one)."""
    spec = OUTCOMES[outcome]
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action=f"selfservice.run.{spec.audit_action}",
        object_type=OBJECT_TYPE,
        object_id=run.id,
        before=before,
        after=snapshot(run) | (audit_extra or {}),
    )
    events.emit(
        session=session,
        type=f"selfservice.run.{outcome}",
        subject=f"template_run:{run.id}",
        payload=RunChanged(
            id=run.id,
            template=str(run.spec.get("name")),
            status=run.status,
            dry_run=run.dry_run,
            requester_user_id=run.requester_user_id,
            requesting_team_id=run.requesting_team_id,
            failed_step=run.failed_step,
            error=run.error,
            ticket_id=run.ticket_id,
            reason=run.decision_reason,
        ),
    )
    title = (spec.dry_title if run.dry_run else None) or spec.inbox_title
    if title is not None:
        name = str(run.spec.get("title") or run.spec.get("name"))
        notify_requester(session, run, title.format(id=run.id, title=name), body)


def notify_requester(session: Session, run: Run, title: str, body: str = "") -> None:
    if run.requester_user_id is not None:
        inbox.notify(
            session=session,
            user_id=run.requester_user_id,
            title=title,
            body=body,
            link=f"/selfservice/runs/{run.id}",
        )
