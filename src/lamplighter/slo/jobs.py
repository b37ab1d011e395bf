"""The SLO domain's jobs: evaluate every SLO each minute, forget old buckets each day."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from lamplighter.core import jobs
from lamplighter.core.db import utcnow
from lamplighter.slo import evaluate
from lamplighter.slo.models import (
    DAY,
    HOUR,
    MINUTE,
    FreezeException,
    ProbeResult,
    Slo,
    SloCount,
    SloDaily,
)

EVALUATE_JOB = "slo.evaluate"
PRUNE_JOB = "slo.prune"
EVALUATE_EVERY_S = 60
# What is kept: minutes for the longest window (a 31-day month) and its timeslices, hours and
# days for the year of history.
KEEP = {MINUTE: dt.timedelta(days=35), HOUR: dt.timedelta(days=400), DAY: dt.timedelta(days=400)}
KEEP_PROBE_RESULTS = dt.timedelta(days=30)


def prometheus_measure(settings: object) -> evaluate.PrometheusMeasure | None:
    from lamplighter.slo import prometheus

    return prometheus.measure_for(settings)


@jobs.handler(EVALUATE_JOB)
def _evaluate(ctx: jobs.JobContext) -> None:
    slos = list(ctx.session.scalars(sa.select(Slo).order_by(Slo.id)))
    evaluate.evaluate(session=ctx.session, slos=slos, prometheus=prometheus_measure(ctx.settings))


@jobs.handler(PRUNE_JOB)
def _prune(ctx: jobs.JobContext) -> None:
    now = utcnow()
    for resolution, keep in KEEP.items():
        ctx.session.execute(
            sa.delete(SloCount).where(SloCount.resolution == resolution, SloCount.at < now - keep)
        )
    ctx.session.execute(sa.delete(ProbeResult).where(ProbeResult.at < now - KEEP_PROBE_RESULTS))
    ctx.session.execute(sa.delete(SloDaily).where(SloDaily.day < (now - KEEP[DAY]).date()))
    ctx.session.execute(
        sa.delete(FreezeException).where(FreezeException.expires_at < now - dt.timedelta(days=90))
    )


jobs.recurring(EVALUATE_JOB, every_s=EVALUATE_EVERY_S, kind=EVALUATE_JOB)
jobs.recurring(PRUNE_JOB, every_s=86400, kind=PRUNE_JOB)
