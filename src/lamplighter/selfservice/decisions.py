"""A run waiting for a step's decision goes on, or ends, when that decision is made.

A step whose action waits for a person (``access.grant`` files a request the resource's
accountable person decides) leaves the run ``awaiting_decision`` with the step ``waiting``
(:mod:`runner`). The code that records the decision calls :func:`step_decided` in the same
transaction: approved, the step succeeds and the run is queued to go on with its next steps
(the journal ticket, with its effort, is filed only when the whole run succeeds); rejected, the
step fails with the decider's reason and the run ends ``rejected``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.selfservice.lifecycle import announce, snapshot
from lamplighter.selfservice.models import Run, RunStatus, RunStep, StepStatus
from lamplighter.selfservice.runs import enqueue_run


def step_decided(
    session: Session,
    actor: Actor,
    *,
    run_id: int,
    approved: bool,
    reason: str | None,
    what: str,
    output_changes: Mapping[str, Any] | None = None,
) -> Run | None:
    """Record the decision ``what`` (e.g. "access grant #4") on the run's waiting step."""
    run = session.scalar(sa.select(Run).where(Run.id == run_id).with_for_update())
    if run is None or run.status != RunStatus.AWAITING_DECISION.value:
        return None  # the run went on (or ended) another way; the decision stands on its own
    step = session.scalar(
        sa.select(RunStep)
        .where(RunStep.run_id == run.id, RunStep.status == StepStatus.WAITING.value)
        .order_by(RunStep.index)
    )
    now = utcnow()
    before = snapshot(run)
    run.approver_user_id = actor.user_id
    run.decision_reason = reason
    run.decided_at = now
    verdict = "approved" if approved else "rejected"
    line = f"{what} {verdict} by {actor.label}" + (f": {reason}" if reason else "")
    if step is not None:
        step.log = "\n".join(part for part in (step.log, line) if part)
        step.finished_at = now
        if output_changes and isinstance(step.output, dict):
            step.output = {**step.output, **output_changes}
    if approved:
        if step is not None:
            step.status = StepStatus.SUCCEEDED.value
        run.status = RunStatus.QUEUED.value
        announce(session, actor, run, "approved", before)
        enqueue_run(session, run, f"decided-{step.step_id if step else 'run'}")
    else:
        if step is not None:
            step.status = StepStatus.FAILED.value
            step.error = line
            run.failed_step = step.step_id
        run.status = RunStatus.REJECTED.value
        run.finished_at = now
        announce(session, actor, run, "rejected", before, body=line)
    return run
