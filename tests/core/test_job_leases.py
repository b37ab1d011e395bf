"""A job whose handler is slower than the lease keeps its lease while its worker lives (a
heartbeat renews it), so no other worker runs it a second time; every kind that is not
batch-safe runs this way (webhook deliveries, template runs, imports, plugins' kinds)."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from lamplighter.core import jobs
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import Job
from lamplighter.core.settings import Settings
from tests.helpers import job_handlers

SLOW = "test.leases.slow"
CALLS: list[int] = []


def _slow(ctx: jobs.JobContext) -> None:
    CALLS.append(ctx.job_id)
    time.sleep(float(ctx.payload["seconds"]))


def test_a_slow_job_is_not_taken_over_while_its_worker_lives(
    db: Database, settings: Settings
) -> None:
    CALLS.clear()
    settings = settings.model_copy(update={"job_lease_s": 0.5})
    with job_handlers({SLOW: _slow}):
        with db.transaction() as session:
            jobs.enqueue(session=session, kind=SLOW, payload={"seconds": 1.8})
        busy = jobs.Worker(db, settings, name="busy")
        watcher = jobs.Worker(db, settings, name="watcher")
        (claimed,) = busy.claim(10)  # the busy worker has it first
        thread = threading.Thread(target=busy.run_one, args=(claimed,))
        thread.start()
        leases = set()
        taken = 0
        while thread.is_alive():
            taken += watcher.run_once()
            with db.sessionmaker() as session:
                leases.add(session.scalar(sa.select(Job.lease_expires_at)))
            time.sleep(0.05)
        thread.join()
    assert taken == 0 and len(CALLS) == 1
    leases.discard(None)
    assert len(leases) >= 3  # renewed again and again while the handler ran
    with db.sessionmaker() as session:
        job = session.scalars(sa.select(Job)).one()
    assert (job.status, job.attempts, job.locked_by) == ("done", 1, "busy")


def test_a_stopped_worker_still_loses_its_job_when_the_lease_runs_out(
    db: Database, settings: Settings
) -> None:
    CALLS.clear()
    settings = settings.model_copy(update={"job_lease_s": 0.3})
    with job_handlers({SLOW: _slow}):
        with db.transaction() as session:
            jobs.enqueue(session=session, kind=SLOW, payload={"seconds": 0})
        dead = jobs.Worker(db, settings, name="dead")
        assert len(dead.claim(10)) == 1  # claimed, then the process died: no heartbeat
        time.sleep(0.4)
        alive = jobs.Worker(db, settings, name="alive")
        alive._last_requeue = 0.0
        deadline = time.monotonic() + 5
        while not CALLS and time.monotonic() < deadline:
            alive._last_requeue = 0.0
            alive.run_once()
            time.sleep(0.05)
    assert len(CALLS) == 1
    with db.sessionmaker() as session:
        job = session.scalars(sa.select(Job)).one()
    assert (job.status, job.locked_by) == ("done", "alive")
    assert job.finished_at is not None and job.finished_at <= utcnow()
