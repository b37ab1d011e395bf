"""Heartbeats: a sender pings a URL; a ping late by more than interval + grace is an alert.

The recurring job ``alerting.heartbeats`` (every 10 seconds, once across processes) triggers a
``heartbeat-missed`` alert for every late heartbeat integration; the dedup key makes a second
run fold into the open alert. The next ping resolves it.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from lamplighter.alerting import integrations, store
from lamplighter.alerting.intake import IncomingAlert
from lamplighter.alerting.models import Integration, IntegrationKind
from lamplighter.core import jobs
from lamplighter.core.db import Database, utcnow

CHECK_JOB = "alerting.heartbeats"
CHECK_EVERY_S = 10
DEDUP_KEY = "heartbeat-missed"


def _alert(integration: Integration, action: str, late_by: dt.timedelta | None) -> IncomingAlert:
    summary = f"Heartbeat {integration.name!r} missed"
    if late_by is not None:
        summary += f": no ping for {int(late_by.total_seconds())} s"
    return IncomingAlert(
        action=action,  # type: ignore[arg-type]
        dedup_key=DEDUP_KEY,
        summary=summary,
        severity="critical",
        source="lamplighter heartbeat",
        received_format="generic",
        labels={"alertname": "HeartbeatMissed", "heartbeat": integration.name},
    )


def ping(db: Database, snapshot: integrations.Snapshot) -> None:
    """Record a ping; resolve the missed-heartbeat alert if one is open."""
    now = utcnow()
    with db.transaction() as session:
        integration = session.get(Integration, snapshot.id)
        if integration is None:
            return
        integration.last_ping_at = now
        session.flush()
        store.write_in(
            session, [store.Submission(snapshot, [_alert(integration, "resolve", None)])], now=now
        )


def late(integration: Integration, now: dt.datetime) -> dt.timedelta | None:
    """How long since the last ping (or creation), when that is past interval + grace."""
    if integration.heartbeat_interval_s is None:
        return None
    since = integration.last_ping_at or integration.created_at
    allowed = dt.timedelta(
        seconds=integration.heartbeat_interval_s + (integration.heartbeat_grace_s or 0)
    )
    waited = now - since
    return waited if waited > allowed else None


@jobs.handler(CHECK_JOB)
def check(ctx: jobs.JobContext) -> None:
    now = utcnow()
    submissions = []
    for integration in ctx.session.scalars(
        sa.select(Integration).where(
            Integration.kind == IntegrationKind.HEARTBEAT.value, Integration.is_active.is_(True)
        )
    ):
        late_by = late(integration, now)
        if late_by is not None:
            snapshot = integrations.snapshot_of(integration, None)
            submissions.append(
                store.Submission(snapshot, [_alert(integration, "trigger", late_by)])
            )
    if submissions:
        store.write_in(ctx.session, submissions, now=now)


jobs.recurring(CHECK_JOB, every_s=CHECK_EVERY_S, kind=CHECK_JOB)
