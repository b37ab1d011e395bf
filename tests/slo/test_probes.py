"""HTTP probes: slots spread over the interval, each probed once, results recorded and counted
(a URL the outbound policy refuses is kept but not counted)."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.core import jobs
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import Job
from lamplighter.core.settings import Settings
from lamplighter.slo import evaluate, probes, service
from lamplighter.slo.models import ProbeResult, Slo, SloCount
from lamplighter.slo.schemas import SloIn
from tests.conftest import SYSTEM
from tests.slo.conftest import Org

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


class Target:
    """A local HTTP server answering each GET with the next (status, delay_s) planned."""

    def __init__(self) -> None:
        self.plan: list[tuple[int, float]] = []
        self.hits = 0
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target.hits += 1
                status, delay_s = target.plan.pop(0) if target.plan else (200, 0.0)
                time.sleep(delay_s)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Target:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    with Target() as served:
        yield served


@pytest.fixture
def internal(settings: Settings) -> Settings:
    """Settings that let requests reach the local test server."""
    return settings.model_copy(update={"outbound_allow_internal": "127.0.0.0/8"})


def probe_slo(org: Org, name: str = "health", **probe: Any) -> int:
    slo, _ = org.slo(name=name, source="probe", probe=probe)
    return slo.id


def run_probe(db: Database, settings: Settings, slo_id: int, slot: dt.datetime) -> Any:
    with db.transaction() as session:
        result = probes.probe(session=session, settings=settings, slo_id=slo_id, slot=slot)
        if result is not None:
            session.expunge(result)
        return result


def counts(db: Database, slo_id: int) -> tuple[int, int]:
    with db.sessionmaker() as session:
        good, total = session.execute(
            sa.select(sa.func.sum(SloCount.good), sa.func.sum(SloCount.total)).where(
                SloCount.slo_id == slo_id, SloCount.resolution == 60
            )
        ).one()
        return int(good or 0), int(total or 0)


def probe_jobs(db: Database) -> list[Job]:
    with db.sessionmaker() as session:
        found = list(
            session.scalars(sa.select(Job).where(Job.kind == probes.PROBE_JOB).order_by(Job.id))
        )
        session.expunge_all()
        return found


# -- spreading and scheduling ------------------------------------------------------------------


def test_a_hundred_slos_are_spread_over_the_minute_not_fired_at_once() -> None:
    phases = [probes.phase_s(slo_id, 60) for slo_id in range(1, 101)]

    assert len(set(phases)) >= 40  # 100 draws from 60 seconds: about 49 distinct
    per_ten_seconds = Counter(phase // 10 for phase in phases)
    assert sorted(per_ten_seconds) == [0, 1, 2, 3, 4, 5]
    assert max(per_ten_seconds.values()) <= 30  # an even spread gives ~17 per 10 s
    # The phase is stable: the same on every process, run after run.
    assert phases == [probes.phase_s(slo_id, 60) for slo_id in range(1, 101)]


def test_the_scheduler_enqueues_each_slot_once_due_at_the_slot(db: Database, org: Org) -> None:
    with db.transaction() as session:
        for index in range(100):
            service.create(
                session=session,
                actor=SYSTEM,
                data=SloIn(
                    entity=org.entity.ref,
                    name=f"probe-{index}",
                    objective=99.0,
                    source="probe",
                    probe={"url": "http://127.0.0.1:9/", "interval_s": 60},
                ),
            )
    org.slo(name="pushed", source="events")  # not probed
    # Six scheduler runs, every 10 s over a minute, twice each as by two workers.
    for step in range(6):
        for _ in range(2):
            with db.transaction() as session:
                probes.schedule(session=session, now=NOW + dt.timedelta(seconds=10 * step))

    queued = probe_jobs(db)
    slots = [job.payload["slot"] for job in queued]
    assert len({job.payload["slo_id"] for job in queued}) == 100
    assert len({job.idempotency_key for job in queued}) == len(queued)
    for job in queued:
        assert job.idempotency_key == f"slo-probe:{job.payload['slo_id']}:{job.payload['slot']}"
        assert job.due_at.replace(tzinfo=dt.UTC).timestamp() == job.payload["slot"]
    # Each SLO's slot in the minute after NOW (and the first few of the next): one per SLO per
    # minute, at its own second.
    first_minute = [s for s in slots if NOW.timestamp() <= s < NOW.timestamp() + 60]
    assert len(first_minute) == 100
    assert len({s % 60 for s in first_minute}) >= 40
    # The first run also offers the slot just before NOW (a run before it would have queued it).
    assert all(NOW.timestamp() - 50 <= s <= NOW.timestamp() + 60 + 10 for s in slots)


def test_slots_follow_the_interval_of_each_slo(db: Database, org: Org) -> None:
    every_20 = probe_slo(org, "fast", url="http://127.0.0.1:9/", interval_s=20)
    every_300 = probe_slo(org, "slow", url="http://127.0.0.1:9/", interval_s=300)
    for step in range(30):  # five minutes of scheduler runs
        with db.transaction() as session:
            probes.schedule(session=session, now=NOW + dt.timedelta(seconds=10 * step))

    by_slo = Counter(job.payload["slo_id"] for job in probe_jobs(db))

    assert by_slo[every_20] in (15, 16)
    assert by_slo[every_300] in (1, 2)
    slow_slots = sorted(
        j.payload["slot"] for j in probe_jobs(db) if j.payload["slo_id"] == every_300
    )
    assert all(slot % 300 == probes.phase_s(every_300, 300) for slot in slow_slots)


# -- probing -----------------------------------------------------------------------------------


def test_probes_record_success_errors_and_slowness_and_count_them(
    db: Database, org: Org, internal: Settings, target: Target
) -> None:
    slo_id = probe_slo(org, url=target.url, interval_s=60, latency_threshold_ms=300)
    target.plan = [(200, 0.0), (500, 0.0), (200, 0.5)]
    now = utcnow().replace(microsecond=0)
    slots = [now - dt.timedelta(seconds=20), now - dt.timedelta(seconds=10), now]

    results = [run_probe(db, internal, slo_id, slot) for slot in slots]

    assert [(r.ok, r.status_code) for r in results] == [(True, 200), (False, 500), (False, 200)]
    assert results[0].error is None and results[0].latency_ms < 300
    assert results[1].error == "HTTP 500, expected 200"
    assert results[2].latency_ms >= 500
    assert results[2].error.startswith("took ") and "over the 300 ms threshold" in results[2].error
    assert counts(db, slo_id) == (1, 3)
    with db.sessionmaker() as session:
        stored = session.scalars(
            sa.select(ProbeResult).where(ProbeResult.slo_id == slo_id).order_by(ProbeResult.at)
        ).all()
        assert [r.at.replace(tzinfo=dt.UTC) for r in stored] == slots
    # The engine sees one good probe in three.
    with db.transaction() as session:
        slo = session.get(Slo, slo_id)
        assert slo is not None
        evaluate.evaluate(session=session, slos=[slo], now=now + dt.timedelta(seconds=1))
        assert slo.attainment == pytest.approx(1 / 3)
        assert slo.status == "exhausted"


def test_a_probe_that_times_out_counts_as_bad(
    db: Database, org: Org, internal: Settings, target: Target
) -> None:
    slo_id = probe_slo(org, url=target.url, timeout_s=0.2)
    target.plan = [(200, 1.0)]

    result = run_probe(db, internal, slo_id, utcnow())

    assert not result.ok and result.status_code is None
    assert result.error == "no answer within 0.2 s"
    assert counts(db, slo_id) == (0, 1)


def test_without_a_url_the_entitys_health_link_is_probed(
    db: Database, org: Org, internal: Settings
) -> None:
    slo_id = probe_slo(org)  # the entity's health link: http://127.0.0.1:9/healthz, closed

    result = run_probe(db, internal, slo_id, utcnow())

    assert not result.ok
    assert result.error.startswith("ConnectError: ")
    assert counts(db, slo_id) == (0, 1)


def test_a_url_the_outbound_policy_refuses_is_recorded_but_not_counted(
    db: Database, org: Org, settings: Settings, target: Target
) -> None:
    slo_id = probe_slo(org, url=target.url)  # loopback, and the settings allow no internal range

    result = run_probe(db, settings, slo_id, utcnow())

    assert not result.ok
    assert result.error == "refused by the outbound policy: it is a loopback address"
    assert target.hits == 0
    assert counts(db, slo_id) == (0, 0)
    with db.transaction() as session:
        slo = session.get(Slo, slo_id)
        assert slo is not None
        evaluate.evaluate(session=session, slos=[slo])
        assert slo.status == "no data"  # not a failure of the service


def test_a_stale_slot_or_a_gone_slo_is_not_probed(
    db: Database, org: Org, internal: Settings, target: Target
) -> None:
    slo_id = probe_slo(org, url=target.url, interval_s=60)

    assert run_probe(db, internal, slo_id, utcnow() - dt.timedelta(minutes=5)) is None
    assert run_probe(db, internal, slo_id + 1000, utcnow()) is None
    assert target.hits == 0
    assert counts(db, slo_id) == (0, 0)


def test_the_worker_runs_scheduled_probes(
    db: Database, org: Org, internal: Settings, target: Target
) -> None:
    slo_id = probe_slo(org, url=target.url, interval_s=10)
    with db.transaction() as session:
        probes.schedule(session=session)
        # Bring the slot forward so the test need not wait for it.
        session.execute(sa.update(Job).values(due_at=utcnow() - dt.timedelta(seconds=1)))
    worker = jobs.Worker(db, internal)

    while worker.run_once():
        pass

    assert target.hits == 1
    assert counts(db, slo_id) == (1, 1)
    assert [job.status for job in probe_jobs(db)] == ["done"]
