"""HTTP probes run by Lamplighter's workers: the SLI source for teams with neither Prometheus
nor their own event counts.

Every 10 s a recurring job (``slo.probe_schedule``) looks at the SLOs of source ``probe`` and
enqueues a ``slo.probe`` job for each slot that falls due before the next look. Slots are
spread over each SLO's interval rather than all fired at the top of the minute: an SLO's phase
is a stable hash of its id modulo its interval, and its slots are the epoch-aligned interval
starts plus that phase:

    interval_s=60, phase_s(slo_id=7, 60) == 41  ->  slots at hh:mm:41 every minute

A slot's job has the idempotency key ``slo-probe:<id>:<slot epoch>`` and is due at the slot,
so any number of schedulers and workers probe each slot once. The probe sends ``GET`` to the
SLO's URL (by default its entity's health link from the catalog) through the outbound policy,
records a :class:`ProbeResult`, and counts one event at the slot: good when the status is the
expected one and the answer came within the latency threshold. A URL the outbound policy
refuses says nothing about the service: the result is kept with the reason and nothing is
counted (the SLO shows ``no data`` rather than a failure).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity
from lamplighter.core import jobs, outbound
from lamplighter.core.db import utcnow
from lamplighter.core.settings import Settings
from lamplighter.slo import service
from lamplighter.slo.models import ProbeResult, Slo

log = logging.getLogger(__name__)
SCHEDULE_JOB = "slo.probe_schedule"
PROBE_JOB = "slo.probe"
SCHEDULE_EVERY_S = 10
DEFAULT_INTERVAL_S = 60
DEFAULT_TIMEOUT_S = 10.0
MAX_ERROR_CHARS = 500  # ProbeResult.error's column


def phase_s(slo_id: int, interval_s: int) -> int:
    """The SLO's offset within its interval: the same on every process and every restart."""
    digest = hashlib.blake2b(f"slo-probe:{slo_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % interval_s


def next_slot(slo_id: int, interval_s: int, before: dt.datetime) -> dt.datetime:
    """The latest slot of the SLO at or before ``before``."""
    epoch = int(before.timestamp())
    phase = phase_s(slo_id, interval_s)
    slot = epoch - epoch % interval_s + phase
    if slot > epoch:
        slot -= interval_s
    return dt.datetime.fromtimestamp(slot, dt.UTC)


def idempotency_key(slo_id: int, slot: dt.datetime) -> str:
    return f"slo-probe:{slo_id}:{int(slot.timestamp())}"


def schedule(*, session: Session, now: dt.datetime | None = None) -> int:
    """Enqueue the probe of each probe SLO whose slot comes before the next scheduling run
    (due at the slot itself); returns how many slots were offered. A slot already queued is
    skipped by its idempotency key, so running this twice, or on two processes, is harmless."""
    now = now or utcnow()
    horizon = now + dt.timedelta(seconds=SCHEDULE_EVERY_S)
    rows = session.execute(sa.select(Slo.id, Slo.probe).where(Slo.source == "probe")).all()
    offered = 0
    for slo_id, probe in rows:
        interval_s = int((probe or {}).get("interval_s") or DEFAULT_INTERVAL_S)
        slot = next_slot(slo_id, interval_s, horizon)
        jobs.enqueue(
            session=session,
            kind=PROBE_JOB,
            payload={"slo_id": slo_id, "slot": int(slot.timestamp())},
            due_at=slot,
            idempotency_key=idempotency_key(slo_id, slot),
            max_attempts=2,
        )
        offered += 1
    return offered


def probe(
    *,
    session: Session,
    settings: Settings,
    slo_id: int,
    slot: dt.datetime,
    now: dt.datetime | None = None,
    transport: httpx.BaseTransport | None = None,
) -> ProbeResult | None:
    """Probe one slot of an SLO, record the result and count it; None when there is nothing to
    do (the SLO is gone, is no longer a probe SLO, or the slot is older than its interval)."""
    slo = session.get(Slo, slo_id)
    if slo is None or slo.source != "probe":
        return None
    settings_of = slo.probe or {}
    interval_s = int(settings_of.get("interval_s") or DEFAULT_INTERVAL_S)
    if (now or utcnow()) - slot > dt.timedelta(seconds=interval_s):
        return None  # a worker that was away: the next slot measures the service as it is now
    url = settings_of.get("url")
    if not url:
        entity = session.get(Entity, slo.entity_id)
        url = service.health_link(entity) if entity is not None else None
    timeout_s = float(settings_of.get("timeout_s") or DEFAULT_TIMEOUT_S)
    expected = int(settings_of.get("expected_status") or 200)
    threshold = settings_of.get("latency_threshold_ms")
    threshold_ms = float(threshold) if threshold is not None else None
    result = ProbeResult(slo_id=slo.id, at=slot, ok=False)
    counted = True
    if not url:
        result.error = "no URL to probe: the entity has no health link in the catalog"
        counted = False
    else:
        started = time.monotonic()
        try:
            with outbound.client(
                outbound.Policy.from_settings(settings), timeout_s=timeout_s, transport=transport
            ) as http:
                response = http.get(url, headers={"User-Agent": "Lamplighter-probe"})
            latency_ms = (time.monotonic() - started) * 1000
        except outbound.Refused as exc:
            result.error = str(exc)
            counted = False
        except httpx.TimeoutException:
            result.latency_ms = (time.monotonic() - started) * 1000
            result.error = f"no answer within {timeout_s:g} s"
        except httpx.HTTPError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        else:
            result.status_code = response.status_code
            result.latency_ms = latency_ms
            result.ok = response.status_code == expected and (
                threshold_ms is None or latency_ms <= threshold_ms
            )
            if response.status_code != expected:
                result.error = f"HTTP {response.status_code}, expected {expected}"
            elif not result.ok:
                result.error = f"took {latency_ms:.0f} ms, over the {threshold_ms:g} ms threshold"
    if result.error is not None:
        result.error = result.error[:MAX_ERROR_CHARS]
    session.add(result)
    if counted:
        service.record_counts(
            session=session, slo_id=slo.id, points=[(slot, 1 if result.ok else 0, 1)]
        )
    session.flush()
    return result


@jobs.handler(SCHEDULE_JOB, batch_safe=True)
def _schedule(ctx: jobs.JobContext) -> None:
    schedule(session=ctx.session)


@jobs.handler(PROBE_JOB)
def _probe(ctx: jobs.JobContext) -> None:
    payload: dict[str, Any] = ctx.payload
    probe(
        session=ctx.session,
        settings=ctx.settings,
        slo_id=int(payload["slo_id"]),
        slot=dt.datetime.fromtimestamp(int(payload["slot"]), dt.UTC),
    )


jobs.recurring(SCHEDULE_JOB, every_s=SCHEDULE_EVERY_S, kind=SCHEDULE_JOB)
