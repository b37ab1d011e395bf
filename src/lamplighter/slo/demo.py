"""The SLOs' part of the demo: objectives on the demo catalog's services, in every state.

Each SLO on built-in events or probes gets 32 days of per-minute counts shaped like real
traffic (a daily peak in the European afternoon, quieter weekends, a little noise), a steady
trickle of errors and a few incidents. Incidents are written as a share of the SLO's 30-day
error budget rather than as an error rate, so the states below hold whatever hour the demo is
loaded at:

- ``payments-gateway/card-authorisations`` **burning**: a burst over the last 100 minutes at
  ~30x the sustainable rate pages the Payments team (the budget is two thirds left);
- ``checkout-web/checkout-availability`` **exhausted**: a long outage nine days ago spent the
  budget, so checkout-web's releases are frozen;
- ``order-events/order-delivery`` **warning**: about two thirds of the budget spent;
- the ledger, the payments API's latency, a probe of the gateway's health URL, a calendar-month
  SLO in Asia/Kolkata and a timeslices SLO on the payments database **healthy**;
- ``checkout-web/edge-availability`` on Prometheus: **no data** with the reason, unless
  ``LAMPLIGHTER_PROMETHEUS_URL`` is set.

While a worker runs, the demo's traffic goes on: every minute a recurring job
(``slo.demo_traffic``) pushes the minutes since the last one for the SLOs on built-in events
that carry the ``lamplighter_demo`` label (those this module made, and no others), in the same
shape, the burning one at ``live_burn`` (16x: it keeps paging, and its budget lasts about a day
and a half). Without a worker the burst ends at load time, and the page alert resolves once its
short window (30 minutes for the 6h/30m alert) holds no new events.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog import service as catalog
from lamplighter.catalog.refs import Ref
from lamplighter.core import jobs
from lamplighter.core.context import Actor
from lamplighter.core.db import Database, utcnow
from lamplighter.slo import evaluate, service
from lamplighter.slo.models import MINUTE, ProbeResult, Slo, SloCount
from lamplighter.slo.schemas import SloIn

ACTOR = Actor.system("demo loader")
TRAFFIC_JOB = "slo.demo_traffic"
DEMO_LABEL = "lamplighter_demo"  # on the SLOs this module made: only they get live traffic
CATCH_UP = dt.timedelta(hours=1)  # after the workers were stopped: an hour of traffic at most
HISTORY_DAYS = 32
BUDGET_MINUTES = 30 * 24 * 60  # incidents are sized against a 30-day budget


@dataclass(frozen=True)
class Incident:
    """Errors between ``minutes_ago`` and ``minutes_ago - minutes``: either spending
    ``budget_share`` of the SLO's 30-day error budget at a constant error rate (so a constant
    burn rate), or failing ``error_ratio`` of the events (timeslices; probes fail outright)."""

    minutes_ago: int
    minutes: int
    budget_share: float = 0.0
    error_ratio: float | None = None


@dataclass(frozen=True)
class DemoSlo:
    spec: dict[str, Any]  # SloIn fields
    per_minute: int = 0  # mean events a minute at the daily average
    baseline_burn: float = 0.2  # the everyday trickle of errors, as a burn rate
    incidents: tuple[Incident, ...] = field(default_factory=tuple)
    seed: int = 0
    live_burn: float | None = None  # the burn rate of the live traffic; None: the baseline


SLOS: tuple[DemoSlo, ...] = (
    DemoSlo(
        {
            "entity": "service:payments-gateway",
            "name": "card-authorisations",
            "description": "Card authorisation requests answered without a 5xx.",
            "objective": 99.9,
            "source": "events",
            "labels": {"journey": "pay"},
        },
        per_minute=800,
        baseline_burn=0.2,
        incidents=(Incident(9 * 1440 + 200, 25, 0.05), Incident(100, 100, 0.07)),
        seed=1,
        live_burn=16.0,
    ),
    DemoSlo(
        {
            "entity": "service:checkout-web",
            "name": "checkout-availability",
            "description": "Checkout pages served without an error.",
            "objective": 99.5,
            "source": "events",
            "labels": {"journey": "checkout"},
        },
        per_minute=1500,
        baseline_burn=0.3,
        incidents=(Incident(9 * 1440 + 600, 300, 0.85), Incident(20 * 1440, 15, 0.04)),
        seed=2,
    ),
    DemoSlo(
        {
            "entity": "service:order-events",
            "name": "order-delivery",
            "description": "Order events delivered to the topic on the first attempt.",
            "objective": 99.0,
            "window": "28d",
            "source": "events",
        },
        per_minute=400,
        baseline_burn=0.2,
        incidents=(Incident(6 * 1440 + 300, 240, 0.42),),
        seed=3,
    ),
    DemoSlo(
        {
            "entity": "service:ledger",
            "name": "postings",
            "description": "Ledger postings committed without an error.",
            "objective": 99.95,
            "source": "events",
        },
        per_minute=600,
        baseline_burn=0.15,
        incidents=(Incident(14 * 1440 + 90, 12, 0.06), Incident(3 * 1440 + 700, 8, 0.03)),
        seed=4,
    ),
    DemoSlo(
        {
            "entity": "api:payments-api",
            "name": "fast-responses",
            "description": "Payments API requests answered within 300 ms.",
            "objective": 99.0,
            "source": "events",
            "sli": {"kind": "latency", "threshold_s": 0.3},
        },
        per_minute=900,
        baseline_burn=0.25,
        incidents=(Incident(11 * 1440 + 400, 45, 0.08),),
        seed=5,
    ),
    DemoSlo(
        {
            "entity": "service:payments-gateway",
            "name": "health-probe",
            # The demo server's own health endpoint: the outbound policy refuses loopback
            # addresses, so the live probes are recorded with that reason and not counted
            # (set LAMPLIGHTER_OUTBOUND_ALLOW_INTERNAL=127.0.0.1/32 to let them through).
            "description": "The gateway's health endpoint answers 200 within 2 s.",
            "objective": 99.5,
            "source": "probe",
            "probe": {
                "url": "http://127.0.0.1:8080/healthz",
                "interval_s": 60,
                "timeout_s": 5,
                "latency_threshold_ms": 2000,
            },
        },
        per_minute=1,
        baseline_burn=0.0,
        incidents=(Incident(17 * 1440 + 300, 20, error_ratio=1.0),),
        seed=6,
    ),
    DemoSlo(
        {
            "entity": "service:ledger",
            "name": "month-end-availability",
            "description": "Ledger reads and writes this calendar month (India Standard Time, "
            "as the Payments team closes the books).",
            "objective": 99.9,
            "window": "calendar-month",
            "time_zone": "Asia/Kolkata",
            "source": "events",
        },
        per_minute=600,
        baseline_burn=0.15,
        incidents=(Incident(2 * 1440 + 400, 30, 0.015),),
        seed=7,
    ),
    DemoSlo(
        {
            "entity": "resource:payments-db",
            "name": "good-minutes",
            "description": "Five-minute slices in which 95 % of queries succeed.",
            "objective": 99.0,
            "budgeting": "timeslices",
            "slice_minutes": 5,
            "slice_threshold": 95,
            "source": "events",
        },
        per_minute=2000,
        baseline_burn=0.5,  # 0.5 % of queries fail: never enough to spoil a slice
        incidents=(
            Incident(8 * 1440 + 500, 40, error_ratio=0.2),
            Incident(22 * 1440, 25, error_ratio=0.15),
        ),
        seed=8,
    ),
    DemoSlo(
        {
            "entity": "service:checkout-web",
            "name": "edge-availability",
            "description": "Requests through the edge proxy without a 5xx, from Prometheus.",
            "objective": 99.9,
            "source": "prometheus",
            "sli": {
                "kind": "ratio",
                "bad_query": 'sum(rate(http_requests_total{job="checkout-web",'
                'code=~"5.."}[{{.window}}]))',
                "total_query": 'sum(rate(http_requests_total{job="checkout-web"}[{{.window}}]))',
            },
        },
        seed=9,
    ),
)


def traffic_shape(weekday: int, minute_of_day: int) -> float:
    """Relative traffic: peaks at 14:00 UTC, lowest at 02:00, weekends at 70 %."""
    daily = 1 + 0.55 * math.cos(2 * math.pi * (minute_of_day / 60 - 14) / 24)
    return daily * (0.7 if weekday >= 5 else 1.0)


SHAPE = {(d, m): traffic_shape(d, m) for d in range(7) for m in range(1440)}


def _minutes(now: dt.datetime) -> list[dt.datetime]:
    last = now.replace(second=0, microsecond=0)
    first = last - dt.timedelta(days=HISTORY_DAYS)
    count = int((last - first).total_seconds() // 60) + 1
    return [first + dt.timedelta(minutes=m) for m in range(count)]


def _points(
    demo: DemoSlo, objective: float, now: dt.datetime
) -> list[tuple[dt.datetime, int, int]]:
    """Per-minute (at, good, total) for an SLO on built-in events."""
    rng = random.Random(demo.seed)
    minutes = _minutes(now)
    daily_noise = {m.date(): rng.uniform(0.6, 1.4) for m in minutes}
    noise = rng.gauss
    totals = [
        max(1, round(demo.per_minute * SHAPE[m.weekday(), m.hour * 60 + m.minute] * noise(1, 0.04)))
        for m in minutes
    ]
    error_ratio = (1 - objective) * demo.baseline_burn
    expected_bad = [
        t * error_ratio * daily_noise[m.date()] for m, t in zip(minutes, totals, strict=True)
    ]
    last = len(minutes) - 1
    recent_total = sum(totals[-BUDGET_MINUTES:])
    for incident in demo.incidents:
        first_index = max(0, last - incident.minutes_ago + 1)
        span = range(first_index, min(last + 1, first_index + incident.minutes))
        if incident.error_ratio is not None:
            ratio = incident.error_ratio
        else:
            span_total = sum(totals[i] for i in span)
            ratio = min(1.0, incident.budget_share * (1 - objective) * recent_total / span_total)
        for i in span:
            expected_bad[i] += totals[i] * ratio
    points = []
    for m, total, expected in zip(minutes, totals, expected_bad, strict=True):
        bad = min(total, int(expected + rng.random()))  # rounded at random: keeps the mean
        points.append((m, total - bad, total))
    return points


def _probe_results(demo: DemoSlo, now: dt.datetime) -> list[dict[str, Any]]:
    """One probe a minute: 200 in tens of milliseconds, but for each incident's minutes."""
    rng = random.Random(demo.seed)
    minutes = _minutes(now)
    last = len(minutes) - 1
    failing: set[int] = set()
    for incident in demo.incidents:
        first_index = max(0, last - incident.minutes_ago + 1)
        failing.update(range(first_index, min(last + 1, first_index + incident.minutes)))
    results = []
    for index, m in enumerate(minutes):
        at = m + dt.timedelta(seconds=demo.seed * 7)  # spread over the interval
        if index in failing:
            results.append(
                {"at": at, "ok": False, "status_code": 503, "latency_ms": 12.0, "error": None}
            )
        else:
            latency = round(rng.lognormvariate(math.log(45), 0.35), 1)
            results.append(
                {"at": at, "ok": True, "status_code": 200, "latency_ms": latency, "error": None}
            )
    return results


def load(db: Database) -> bool:
    """Create the demo SLOs with their history and evaluate them, unless they are there."""
    with db.transaction() as session:
        gateway = catalog.find(session, Ref("service", "default", "payments-gateway"))
        if gateway is None:
            return False  # the catalog's demo is not loaded: nothing to put SLOs on
        if service.of_entity(session=session, entity_id=gateway.id):
            return False
        now = utcnow()
        slos: list[Slo] = []
        for demo in SLOS:
            labels = {**demo.spec.get("labels", {}), DEMO_LABEL: "true"}
            data = SloIn(**{**demo.spec, "labels": labels})
            slo, _ = service.create(session=session, actor=ACTOR, data=data)
            slos.append(slo)
            if slo.source == "probe":
                results = _probe_results(demo, now)
                # Probe results are written as the prober would: each row, and its count.
                # A Core insert: the ORM's bulk path adds bookkeeping per row.
                session.connection().execute(
                    sa.insert(ProbeResult), [{"slo_id": slo.id, **row} for row in results]
                )
                points = [(row["at"], int(row["ok"]), 1) for row in results]
            elif slo.source == "events":
                points = _points(demo, slo.objective, now)
            else:
                continue
            service.record_counts(session=session, slo_id=slo.id, points=points, now=now)
        evaluate.evaluate(session=session, slos=slos, now=now, prometheus=None)
    return True


# -- live traffic while a worker runs -------------------------------------------------------------
BY_NAME = {demo.spec["name"]: demo for demo in SLOS}


def live_points(
    demo: DemoSlo, objective: float, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, int, int]]:
    """The whole minutes from ``start`` (rounded up) to ``end`` (rounded down): the demo's
    traffic shape at its live burn rate. Each minute's noise is seeded by the minute, so
    pushing a minute is the same whichever worker does it."""
    first = evaluate.ceil_to(start, MINUTE)
    last = evaluate.floor_to(end, MINUTE)
    burn = demo.live_burn if demo.live_burn is not None else demo.baseline_burn
    error_ratio = (1 - objective) * burn
    points = []
    minute = first
    while minute < last:
        rng = random.Random(demo.seed * 1_000_003 + int(minute.timestamp()) // MINUTE)
        shape = SHAPE[minute.weekday(), minute.hour * 60 + minute.minute]
        total = max(1, round(demo.per_minute * shape * rng.gauss(1, 0.04)))
        bad = min(total, int(total * error_ratio + rng.random()))
        points.append((minute, total - bad, total))
        minute += dt.timedelta(minutes=1)
    return points


def push_live_traffic(*, session: Session, now: dt.datetime) -> int:
    """Push the demo SLOs' minutes since their last one (an hour at most); returns the points."""
    pushed = 0
    # Only the demo's names are read: an installation without the demo pays one small query.
    found = sa.select(Slo).where(Slo.source == "events", Slo.name.in_(BY_NAME)).order_by(Slo.id)
    for slo in session.scalars(found):
        demo = BY_NAME.get(slo.name)
        if demo is None or slo.labels.get(DEMO_LABEL) != "true":
            continue
        newest = session.scalar(
            sa.select(sa.func.max(SloCount.at)).where(
                SloCount.slo_id == slo.id, SloCount.resolution == MINUTE
            )
        )
        start = now - CATCH_UP
        if newest is not None:
            start = max(start, newest + dt.timedelta(minutes=1))
        points = live_points(demo, slo.objective, start, now)
        if points:
            service.record_counts(session=session, slo_id=slo.id, points=points, now=now)
            pushed += len(points)
    return pushed


@jobs.handler(TRAFFIC_JOB)
def _live_traffic(ctx: jobs.JobContext) -> None:
    push_live_traffic(session=ctx.session, now=utcnow())


jobs.recurring(TRAFFIC_JOB, every_s=60, kind=TRAFFIC_JOB)
