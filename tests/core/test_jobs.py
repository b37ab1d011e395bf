"""The durable job queue: transactional enqueue, retries, leases, real worker processes, schedules."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from lamplighter.core import audit, clock, events, jobs
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import AuditEntry, Event, Job
from lamplighter.core.settings import Settings
from tests.conftest import TEST_SECRET, auth, make_token, make_user
from tests.core import jobkinds
from tests.helpers import job_handlers, run_until

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from lamplighter.cli import main; main()"]

# -- in-process test kinds (the worker subprocesses use tests/core/jobkinds.py) ----------------
COUNT = "test.jobs.count"
WRITE_OK = "test.jobs.write_ok"
WRITE_THEN_FAIL = "test.jobs.write_then_fail"
FAIL_ALWAYS = "test.jobs.fail_always"
PERMANENT = "test.jobs.permanent"
RETRY_LATER = "test.jobs.retry_later"
STEAL_LEASE = "test.jobs.steal_lease"
STOP_WORKER = "test.jobs.stop_worker"
SLOW = "test.jobs.slow"

CALLS: list[tuple[str, int]] = []  # (kind, job id) of every handler start
_calls_lock = threading.Lock()
CURRENT: dict[str, Any] = {}  # "stop": the worker to stop; "clock": the held clock
STEAL_BLOCKED: list[int] = []  # takeovers refused because the running worker holds the row


def _called(ctx: jobs.JobContext) -> None:
    with _calls_lock:
        CALLS.append((ctx.kind, ctx.job_id))


def calls_of(kind: str) -> list[int]:
    with _calls_lock:
        return [job_id for k, job_id in CALLS if k == kind]


def _write_effects(ctx: jobs.JobContext) -> None:
    audit.record(
        session=ctx.session,
        actor=ctx.actor,
        action="test.effect",
        object_type="job",
        object_id=ctx.job_id,
    )
    events.emit(
        session=ctx.session,
        type="test.effect",
        subject=f"job:{ctx.job_id}",
        payload={"job": ctx.job_id},
    )


def _count(ctx: jobs.JobContext) -> None:
    _called(ctx)


def _write_ok(ctx: jobs.JobContext) -> None:
    _called(ctx)
    _write_effects(ctx)


def _write_then_fail(ctx: jobs.JobContext) -> None:
    _called(ctx)
    _write_effects(ctx)
    raise RuntimeError("boom after writing")


def _fail_always(ctx: jobs.JobContext) -> None:
    _called(ctx)
    raise RuntimeError("this handler always fails")


def _permanent(ctx: jobs.JobContext) -> None:
    _called(ctx)
    raise jobs.PermanentFailure("retrying cannot help")


def _retry_later(ctx: jobs.JobContext) -> None:
    _called(ctx)
    if len(calls_of(RETRY_LATER)) <= ctx.payload["postpone"]:
        raise jobs.RetryLater(ctx.payload["delay_s"], "not yet")


def _steal_lease(ctx: jobs.JobContext) -> None:
    """Simulate another worker taking the job over (its lease expired) while this one runs."""
    _called(ctx)
    postgres = ctx.session.get_bind().dialect.name == "postgresql"
    try:
        with Session(ctx.session.get_bind()) as other, other.begin():
            if postgres:
                other.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
            other.execute(
                sa.update(Job).where(Job.id == ctx.job_id).values(locked_by="someone-else")
            )
    except sa.exc.OperationalError:
        STEAL_BLOCKED.append(ctx.job_id)
    _write_effects(ctx)


def _stop_worker(ctx: jobs.JobContext) -> None:
    """Like SIGTERM arriving while the first job of a claimed batch runs."""
    _called(ctx)
    if (worker := CURRENT.pop("stop", None)) is not None:
        worker.stop_event.set()


def _slow(ctx: jobs.JobContext) -> None:
    """Takes ``sleep_s`` of the held clock's time (CURRENT["clock"])."""
    _called(ctx)
    CURRENT["clock"].advance(ctx.payload["sleep_s"])


# -- helpers ------------------------------------------------------------------------------------
TEST_HANDLERS: dict[str, jobs.Handler] = {
    COUNT: _count,
    WRITE_OK: _write_ok,
    WRITE_THEN_FAIL: _write_then_fail,
    FAIL_ALWAYS: _fail_always,
    PERMANENT: _permanent,
    RETRY_LATER: _retry_later,
    STEAL_LEASE: _steal_lease,
    STOP_WORKER: _stop_worker,
    SLOW: _slow,
}


@pytest.fixture(autouse=True)
def _test_kinds() -> Iterator[None]:
    """This module's kinds, registered for its tests only, with their call log emptied."""
    with _calls_lock:
        CALLS.clear()
    with job_handlers(TEST_HANDLERS):
        yield
    CURRENT.clear()


def enqueue_one(
    db: Database, kind: str, payload: dict[str, Any] | None = None, **kwargs: Any
) -> int:
    with db.transaction() as session:
        jobs.enqueue(session=session, kind=kind, payload=payload, **kwargs)
        return int(session.scalar(sa.select(sa.func.max(Job.id)).where(Job.kind == kind)))


def job_row(db: Database, job_id: int) -> Job:
    with db.sessionmaker() as session:
        job = session.get(Job, job_id)
        assert job is not None, f"job {job_id} does not exist"
        return job


def jobs_of(db: Database, kind: str) -> list[Job]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(Job).where(Job.kind == kind).order_by(Job.id)))


def wait_for(condition: Callable[[], bool], what: str, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def idle_rounds(worker: jobs.Worker, rounds: int = 5) -> None:
    for _ in range(rounds):
        worker.run_once()


def subprocess_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMPLIGHTER_")}
    env.update(
        LAMPLIGHTER_DATABASE_URL=database_url,
        LAMPLIGHTER_PLUGINS="tests.core.jobkinds",
        LAMPLIGHTER_TEST_KINDS="1",
        LAMPLIGHTER_SECRET_KEY=TEST_SECRET,
        LAMPLIGHTER_DATA_DIR=str(tmp_path),
        LAMPLIGHTER_JOB_POLL_S="0.05",
        LAMPLIGHTER_LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    env.update(extra)
    return env


class Procs:
    """Worker subprocesses started by a test; each is killed at teardown if still running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, argv: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self.started.append((proc, log))
        return proc

    def last_line(self, proc: subprocess.Popen[bytes]) -> str:
        log = next(log for p, log in self.started if p is proc)
        return log.read_text().strip().splitlines()[-1]

    def output(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for _, log in self.started
        )

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

    def close(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    yield started
    started.close()


# -- 1. enqueue is part of the caller's transaction ---------------------------------------------
def test_rolled_back_enqueue_never_runs_and_committed_one_runs_once(
    db: Database, settings: Settings
) -> None:
    with pytest.raises(RuntimeError, match="use case failed"), db.transaction() as session:
        jobs.enqueue(session=session, kind=COUNT, payload={"n": 1})
        session.flush()
        raise RuntimeError("use case failed")
    assert jobs_of(db, COUNT) == []

    worker = jobs.Worker(db, settings)
    idle_rounds(worker)
    assert calls_of(COUNT) == []

    with db.transaction() as session:
        jobs.enqueue(session=session, kind=COUNT, payload={"n": 2})
    [job] = jobs_of(db, COUNT)
    run_until(worker, lambda: job_row(db, job.id).status == "done")
    idle_rounds(worker)
    assert calls_of(COUNT) == [job.id]
    done = job_row(db, job.id)
    assert (done.attempts, done.last_error, done.locked_by, done.lease_expires_at) == (
        1,
        None,
        worker.worker_id,
        None,
    )
    assert done.finished_at is not None


# -- 2. handler effects and the done mark commit together ---------------------------------------
def test_failed_handler_leaves_no_effects_and_is_rescheduled_with_backoff(
    db: Database, settings: Settings
) -> None:
    job_id = enqueue_one(db, WRITE_THEN_FAIL, {"x": 1})
    worker = jobs.Worker(db, settings)
    before = utcnow()
    assert worker.run_once() == 1
    assert calls_of(WRITE_THEN_FAIL) == [job_id]

    with db.sessionmaker() as session:
        assert (
            session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "test.effect")).all()
            == []
        )
        assert session.scalars(sa.select(Event).where(Event.type == "test.effect")).all() == []
    job = job_row(db, job_id)
    assert job.status == "queued"
    assert job.attempts == 1
    assert job.last_error is not None and "boom after writing" in job.last_error
    assert job.locked_by is None and job.lease_expires_at is None
    # backoff for attempt 1 is base ± 20 %: due no sooner than 0.8 * 0.05 s after the failure
    assert job.due_at >= before + dt.timedelta(seconds=0.8 * settings.job_backoff_base_s)
    assert job.due_at > utcnow() - dt.timedelta(seconds=1)


def test_successful_handler_effects_commit_with_done(db: Database, settings: Settings) -> None:
    job_id = enqueue_one(db, WRITE_OK)
    run_until(jobs.Worker(db, settings), lambda: job_row(db, job_id).status == "done")
    with db.sessionmaker() as session:
        entry = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "test.effect")
        ).one()
        event = session.scalars(sa.select(Event).where(Event.type == "test.effect")).one()
    assert (entry.actor_type, entry.actor_label, entry.object_id) == (
        "system",
        f"job:{WRITE_OK}",
        str(job_id),
    )
    assert event.payload == {"job": job_id}


def test_worker_whose_lease_was_taken_over_rolls_its_work_back(
    db: Database, settings: Settings
) -> None:
    job_id = enqueue_one(db, STEAL_LEASE)
    jobs.Worker(db, settings).run_once()
    assert calls_of(STEAL_LEASE) == [job_id]
    # The running worker holds no lock on the job's row (its heartbeat renews the lease in
    # short transactions), so a takeover goes through on both engines, and the work is undone.
    assert STEAL_BLOCKED == []
    with db.sessionmaker() as session:
        assert (
            session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "test.effect")).all()
            == []
        )
        assert session.scalars(sa.select(Event).where(Event.type == "test.effect")).all() == []
    job = job_row(db, job_id)
    # Neither marked done nor failed by the worker that lost it: the new owner decides.
    assert (job.status, job.locked_by, job.finished_at) == ("running", "someone-else", None)


# -- 3. retries, backoff, dead, and the operator's view -----------------------------------------
def test_always_failing_job_goes_dead_and_can_be_retried(
    db: Database, settings: Settings, client: Any, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue_one(db, FAIL_ALWAYS, {"why": "test"}, max_attempts=3)
    worker = jobs.Worker(db, settings)
    run_until(worker, lambda: job_row(db, job_id).status == "dead")
    idle_rounds(worker)
    assert calls_of(FAIL_ALWAYS) == [job_id] * 3
    job = job_row(db, job_id)
    assert job.attempts == 3 and job.max_attempts == 3
    assert job.finished_at is not None
    assert "this handler always fails" in (job.last_error or "")

    with db.sessionmaker() as session:
        assert [j.id for j in jobs.list_jobs(session=session, status="dead")] == [job_id]
        assert jobs.list_jobs(session=session, status="queued") == []

    sre = make_user(db, role="sre")
    member = make_user(db)
    sre_token, member_token = make_token(db, sre), make_token(db, member)

    listed = client.get("/api/v1/jobs", params={"status": "dead"}, headers=auth(sre_token))
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert (item["id"], item["status"], item["attempts"], item["kind"]) == (
        job_id,
        "dead",
        3,
        FAIL_ALWAYS,
    )
    assert "always fails" in item["last_error"]
    assert (
        client.get(
            "/api/v1/jobs", params={"status": "dead"}, headers=auth(member_token)
        ).status_code
        == 403
    )

    cli = subprocess.run(
        [*CLI, "jobs", "list", "--dead", "--output", "json"],
        env=subprocess_env(database_url, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert cli.returncode == 0, cli.stderr
    rows = json.loads(cli.stdout)
    assert [(r["id"], r["status"], r["attempts"]) for r in rows] == [(job_id, "dead", 3)]

    forbidden = client.post(f"/api/v1/jobs/{job_id}/retry", headers=auth(member_token))
    assert forbidden.status_code == 403
    assert job_row(db, job_id).status == "dead"
    assert client.post("/api/v1/jobs/999999/retry", headers=auth(sre_token)).status_code == 404

    retried = client.post(f"/api/v1/jobs/{job_id}/retry", headers=auth(sre_token))
    assert retried.status_code == 200
    assert (retried.json()["status"], retried.json()["attempts"]) == ("queued", 0)
    job = job_row(db, job_id)
    assert (job.status, job.attempts, job.finished_at) == ("queued", 0, None)
    with db.sessionmaker() as session:
        entry = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "job.retry")).one()
    assert entry.object_id == str(job_id) and entry.actor_id is not None

    # a fresh set of tries: it runs (and fails) three more times before it is dead again
    run_until(worker, lambda: job_row(db, job_id).status == "dead")
    assert len(calls_of(FAIL_ALWAYS)) == 6


def test_permanent_failure_goes_dead_at_once(db: Database, settings: Settings) -> None:
    job_id = enqueue_one(db, PERMANENT, max_attempts=5)
    jobs.Worker(db, settings).run_once()
    job = job_row(db, job_id)
    assert (job.status, job.attempts) == ("dead", 1)
    assert job.last_error == "PermanentFailure: retrying cannot help"
    assert calls_of(PERMANENT) == [job_id]


def test_unknown_kind_goes_dead_at_once(db: Database, settings: Settings) -> None:
    job_id = enqueue_one(db, "test.jobs.nobody-handles-this")
    jobs.Worker(db, settings).run_once()
    job = job_row(db, job_id)
    assert job.status == "dead"
    assert "no handler registered" in (job.last_error or "")


def test_retry_later_does_not_count_an_attempt(
    db: Database, settings: Settings, frozen_clock: clock.ManualClock
) -> None:
    # max_attempts=1: had RetryLater counted, the job would be dead after the first postponement
    job_id = enqueue_one(db, RETRY_LATER, {"postpone": 2, "delay_s": 0.3}, max_attempts=1)
    worker = jobs.Worker(db, settings)
    before = utcnow()
    assert worker.run_once() == 1
    job = job_row(db, job_id)
    assert (job.status, job.attempts, job.last_error) == ("queued", 0, "not yet")
    assert job.due_at >= before + dt.timedelta(seconds=0.3)
    frozen_clock.advance(0.2)
    assert worker.run_once() == 0  # not due yet: the requested delay is honoured

    frozen_clock.advance(0.2)
    assert worker.run_once() == 1  # postponed a second time
    assert worker.run_once() == 0
    frozen_clock.advance(0.4)
    assert worker.run_once() == 1
    assert job_row(db, job_id).status == "done"
    assert calls_of(RETRY_LATER) == [job_id] * 3
    assert job_row(db, job_id).attempts == 1


@given(
    attempt=st.integers(min_value=1, max_value=1000),
    base=st.floats(min_value=0.01, max_value=60),
    cap=st.floats(min_value=0.01, max_value=86_400),
)
def test_backoff_grows_exponentially_and_is_capped(attempt: int, base: float, cap: float) -> None:
    raw = min(cap, base * 2 ** (attempt - 1))
    value = jobs.backoff_s(attempt, base_s=base, max_s=cap)
    assert 0.8 * raw * (1 - 1e-9) <= value <= 1.2 * raw * (1 + 1e-9)
    assert value <= 1.2 * cap * (1 + 1e-9)
    if base * 2**attempt <= cap:  # both uncapped: the next one is longer whatever the jitter
        assert jobs.backoff_s(attempt + 1, base_s=base, max_s=cap) > value


def test_backoff_examples() -> None:
    for attempt, expected in [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 1024.0), (20, 3600.0)]:
        value = jobs.backoff_s(attempt, base_s=2.0, max_s=3600.0)
        assert 0.8 * expected <= value <= 1.2 * expected, (attempt, value)


def test_backoff_is_capped_for_very_many_attempts() -> None:
    assert jobs.backoff_s(1100, base_s=2.0, max_s=3600.0) <= 3600.0


# -- 4. idempotency key -------------------------------------------------------------------------
def test_idempotency_key_creates_one_job(db: Database, settings: Settings) -> None:
    with db.transaction() as session:
        jobs.enqueue(session=session, kind=COUNT, payload={"n": 1}, idempotency_key="order-42")
        jobs.enqueue(session=session, kind=COUNT, payload={"n": 2}, idempotency_key="order-42")
    with db.transaction() as session:
        jobs.enqueue(session=session, kind=COUNT, payload={"n": 3}, idempotency_key="order-42")
        jobs.enqueue(session=session, kind=COUNT, payload={"n": 4}, idempotency_key="order-43")
    by_key = {j.idempotency_key: j for j in jobs_of(db, COUNT)}
    assert set(by_key) == {"order-42", "order-43"}
    assert by_key["order-42"].payload == {"n": 1}

    worker = jobs.Worker(db, settings)
    run_until(worker, lambda: all(j.status == "done" for j in jobs_of(db, COUNT)))
    # the key still counts after the job is done: no second run
    with db.transaction() as session:
        jobs.enqueue(session=session, kind=COUNT, payload={"n": 5}, idempotency_key="order-42")
    idle_rounds(worker)
    assert len(jobs_of(db, COUNT)) == 2
    assert sorted(calls_of(COUNT)) == sorted(j.id for j in by_key.values())


# -- 5. a killed worker's job is run again after its lease expires ------------------------------
def test_job_of_a_killed_worker_runs_again_after_the_lease(
    db: Database, database_url: str, tmp_path: Path, procs: Procs
) -> None:
    starts = tmp_path / "starts.log"
    env = subprocess_env(database_url, tmp_path, LAMPLIGHTER_JOB_LEASE_S="2")
    first = procs.start([*CLI, "worker"], env, "worker-1")
    job_id = enqueue_one(
        db, jobkinds.HANG, {"log": str(starts), "hang_attempts": 1, "sleep_s": 120}, max_attempts=5
    )

    def lines() -> list[list[str]]:
        return [line.split() for line in starts.read_text().splitlines()] if starts.exists() else []

    try:
        wait_for(lambda: len(lines()) >= 1, "the first worker to start the job")
    except AssertionError:
        raise AssertionError(procs.output()) from None
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=15)

    job = job_row(db, job_id)
    assert (job.status, job.attempts) == ("running", 1)
    assert job.locked_by is not None and f":{first.pid}:" in job.locked_by

    second = procs.start([*CLI, "worker"], env, "worker-2")
    try:
        wait_for(lambda: job_row(db, job_id).status == "done", "the job to run again and finish")
    except AssertionError:
        raise AssertionError(procs.output()) from None
    procs.stop(second)
    assert second.returncode == 0, procs.output()

    job = job_row(db, job_id)
    assert (job.status, job.attempts) == ("done", 2)
    assert f":{second.pid}:" in (job.locked_by or "")
    assert lines() == [[str(job_id), "1", str(first.pid)], [str(job_id), "2", str(second.pid)]]


# -- 6. many jobs, two worker processes, each job exactly once (PostgreSQL) ---------------------
def test_two_worker_processes_run_each_job_exactly_once(
    db: Database, database_url: str, tmp_path: Path, procs: Procs
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL-only: several workers claiming with FOR UPDATE SKIP LOCKED")
    with db.engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {jobkinds.RUNS_TABLE}"))
        connection.execute(
            sa.text(
                f"CREATE TABLE {jobkinds.RUNS_TABLE} (job_id BIGINT NOT NULL, pid INTEGER NOT NULL, kind TEXT NOT NULL)"
            )
        )
    try:
        ready = tmp_path / "ready"
        ready.mkdir()
        env = subprocess_env(database_url, tmp_path, LAMPLIGHTER_TEST_READY_DIR=str(ready))
        workers = [
            procs.start([*CLI, "worker", "--batch", "50"], env, f"worker-{n}") for n in (1, 2)
        ]
        try:
            wait_for(lambda: len(list(ready.iterdir())) == 2, "both workers to load the test kinds")
        except AssertionError:
            raise AssertionError(procs.output()) from None
        time.sleep(0.5)  # past migrate check and ensure_schedules, into the polling loop

        with db.transaction() as session:
            jobs.enqueue_many(
                session=session,
                kind=jobkinds.RECORD_BATCH,
                payloads=[{"n": n} for n in range(2000)],
            )
            jobs.enqueue_many(
                session=session,
                kind=jobkinds.RECORD_ONE,
                payloads=[{"n": n, "sleep_s": 0.001} for n in range(1000)],
            )

        def finished() -> bool:
            with db.sessionmaker() as session:
                open_jobs = session.scalar(
                    sa.select(sa.func.count()).where(
                        Job.kind.in_([jobkinds.RECORD_BATCH, jobkinds.RECORD_ONE]),
                        Job.status != "done",
                    )
                )
            return open_jobs == 0

        try:
            wait_for(finished, "all 3000 jobs to be done", timeout=90)
        except AssertionError:
            raise AssertionError(procs.output()) from None
        for proc in workers:
            procs.stop(proc)
            assert proc.returncode == 0, procs.output()

        with db.sessionmaker() as session:
            job_ids = set(
                session.scalars(
                    sa.select(Job.id).where(
                        Job.kind.in_([jobkinds.RECORD_BATCH, jobkinds.RECORD_ONE])
                    )
                )
            )
            runs = session.execute(
                sa.text(f"SELECT job_id, pid, kind FROM {jobkinds.RUNS_TABLE}")
            ).all()
            attempts = set(
                session.scalars(
                    sa.select(Job.attempts).where(
                        Job.kind.in_([jobkinds.RECORD_BATCH, jobkinds.RECORD_ONE])
                    )
                )
            )
        ran = [job_id for job_id, _, _ in runs]
        assert len(job_ids) == 3000
        assert len(ran) == len(set(ran)), "some jobs ran (and committed) more than once"
        assert set(ran) == job_ids, "some jobs never ran"
        assert attempts == {1}
        pids = {pid for _, pid, _ in runs}
        assert pids == {w.pid for w in workers}, "both workers should have done part of the work"
        by_kind = {(pid, kind) for _, pid, kind in runs}
        assert {kind for _, kind in by_kind} == {jobkinds.RECORD_BATCH, jobkinds.RECORD_ONE}
    finally:
        with db.engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {jobkinds.RUNS_TABLE}"))


# -- 7. recurring jobs: one per period across threads and processes -----------------------------
@pytest.fixture
def tick_schedule() -> Iterator[None]:
    jobkinds.declare_recurring()
    yield
    jobkinds.undeclare_recurring()


def test_recurring_job_is_enqueued_once_per_period(
    db: Database, database_url: str, tmp_path: Path, procs: Procs, tick_schedule: None
) -> None:
    jobs.ensure_schedules(db=db)
    jobs.ensure_schedules(db=db)  # idempotent
    start_at = time.time() + 2.0  # leaves the scheduler processes time to start
    end_at = start_at + 3.2
    env = subprocess_env(database_url, tmp_path)
    scheduler = [
        sys.executable,
        "-c",
        "from tests.core.jobkinds import scheduler_main; scheduler_main()",
        database_url,
        str(start_at),
        str(end_at),
    ]
    processes = [procs.start(scheduler, env, f"scheduler-{n}") for n in (1, 2)]
    wins: list[int] = []
    errors: list[BaseException] = []

    def loop() -> None:
        won = 0
        try:
            while time.time() < start_at:
                time.sleep(0.005)
            while time.time() < end_at:
                won += jobs.schedule_due(db=db)
                time.sleep(0.002)
        except BaseException as exc:  # reported below
            errors.append(exc)
        wins.append(won)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    for proc in processes:
        assert proc.wait(timeout=30) == 0, procs.output()
        wins.append(int(procs.last_line(proc)))

    ticks = jobs_of(db, jobkinds.TICK)
    periods = [dt.datetime.fromisoformat(j.payload["period"]) for j in ticks]
    assert len(periods) == len(set(periods)), f"a period was enqueued twice: {sorted(periods)}"
    # The domains' own recurring jobs (the SLO probes' scheduler runs every 10 s) may fall due
    # in the same seconds: every period won is one job, whichever schedule it is of.
    with db.sessionmaker() as session:
        enqueued = session.scalar(
            sa.select(sa.func.count())
            .select_from(Job)
            .where(Job.idempotency_key.like("recurring:%"))
        )
    assert sum(wins) == enqueued, f"wins {wins} but {enqueued} jobs: two processes won one period"
    assert 3 <= len(periods) <= 6
    assert all(p.microsecond == 0 for p in periods)
    ordered = sorted(periods)
    # after the first (possibly overdue) one, periods follow each other a second apart
    assert all((b - a) == dt.timedelta(seconds=1) for a, b in itertools.pairwise(ordered[1:]))
    assert {j.idempotency_key for j in ticks} == {
        f"recurring:{jobkinds.TICK}:{p.isoformat()}" for p in periods
    }


# -- 8. due times ---------------------------------------------------------------------------------
def test_job_is_not_claimed_before_it_is_due(
    db: Database, settings: Settings, frozen_clock: clock.ManualClock
) -> None:
    due_at = utcnow() + dt.timedelta(seconds=1.2)
    later = enqueue_one(db, COUNT, {"when": "later"}, due_at=due_at)
    now = enqueue_one(db, COUNT, {"when": "now"})
    worker = jobs.Worker(db, settings)
    assert worker.run_once() == 1
    assert calls_of(COUNT) == [now]
    assert job_row(db, later).status == "queued"
    for _ in range(3):
        frozen_clock.advance(0.3)
        assert worker.run_once() == 0
    assert calls_of(COUNT) == [now]
    frozen_clock.advance(0.3)
    assert utcnow() == due_at
    assert worker.run_once() == 1
    assert job_row(db, later).status == "done"
    assert calls_of(COUNT) == [now, later]


# -- known bugs -----------------------------------------------------------------------------------
def test_stopping_worker_gives_back_jobs_it_did_not_start(
    db: Database, settings: Settings, frozen_clock: clock.ManualClock
) -> None:
    ids = [enqueue_one(db, STOP_WORKER, {"n": n}, max_attempts=1) for n in range(3)]
    quick = settings.model_copy(update={"job_lease_s": 0.3})
    stopping = jobs.Worker(db, quick)
    CURRENT["stop"] = stopping
    assert stopping.run_once() == 3
    assert calls_of(STOP_WORKER) == ids[:1]  # stopped after the first job

    restarted = jobs.Worker(db, quick)
    frozen_clock.advance(0.4)  # past the lease: a job not given back would be requeued (and die)
    run_until(restarted, lambda: all(job_row(db, i).status != "running" for i in ids), timeout=5)
    idle_rounds(restarted)
    assert sorted(calls_of(STOP_WORKER)) == ids
    assert [job_row(db, i).status for i in ids] == ["done"] * 3


def test_a_job_is_not_started_by_a_worker_whose_lease_expired(
    db: Database, settings: Settings, frozen_clock: clock.ManualClock
) -> None:
    CURRENT["clock"] = frozen_clock
    quick = settings.model_copy(update={"job_lease_s": 1.0})
    ids = [enqueue_one(db, SLOW, {"n": n, "sleep_s": 0.4}) for n in range(5)]
    first, second = jobs.Worker(db, quick, name="first"), jobs.Worker(db, quick, name="second")
    claimed = first.claim(10)
    assert [c.id for c in claimed] == ids
    for job in claimed:  # what first.run_once does with a claimed batch of non-batch jobs …
        # … while another worker sweeps and polls between them: by the fourth job 1.2 s have
        # passed, the leases of the jobs not started yet ran out and the second worker took them
        second.requeue_expired()
        second.run_once()
        first.run_one(job)
    run_until(second, lambda: all(job_row(db, i).status == "done" for i in ids), timeout=10)
    started = calls_of(SLOW)
    assert sorted(started) == ids, f"jobs started more than once: {sorted(started)}"
    assert {job_row(db, i).locked_by for i in ids} == {"first", "second"}


def test_a_wake_brings_an_idle_in_process_worker_to_new_jobs_before_its_poll(
    db: Database, settings: Settings
) -> None:
    """``jobs.wake()`` (the alert committer calls it when groups open): the process's idle
    worker claims at once instead of after ``job_poll_s``; ``stop()`` ends it at once too."""
    slow_poll = settings.model_copy(update={"job_poll_s": 30.0})
    worker = jobs.Worker(db, slow_poll)
    thread = worker.start_thread()
    try:
        time.sleep(0.3)  # it found nothing and waits for its next poll, 30 s away
        job_id = enqueue_one(db, WRITE_OK)
        started = time.monotonic()
        jobs.wake()
        while job_row(db, job_id).status != "done":
            assert time.monotonic() - started < 5, "the woken worker did not run the job"
            time.sleep(0.02)
    finally:
        stopping = time.monotonic()
        worker.stop()
        thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - stopping < 5


# -- 7. a backlog after a quiet spell claims by index (PostgreSQL) -----------------------------
def test_a_backlog_after_a_quiet_spell_is_claimed_by_index_as_many_as_asked(
    db: Database, database_url: str, settings: Settings
) -> None:
    """A worker's claim is prepared once its connection has sent it a few times, and PostgreSQL
    may keep a generic plan made while the table was nearly empty (here forced with
    ``plan_cache_mode``). As ``id IN (subquery)`` that plan scanned every job and ran the
    subquery again for each one, leasing more jobs than asked: 57 s for one claim of a 40,000-job
    backlog, until autovacuum analysed the table. The claim takes the batch it asked for, at
    once."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL-only: plan caching of prepared statements")
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("ANALYZE jobs"))  # the quiet spell's statistics: no jobs
    url = sa.engine.make_url(database_url).update_query_dict(
        {"options": "-c plan_cache_mode=force_generic_plan"}
    )
    quiet = Database(url.render_as_string(hide_password=False))
    try:
        worker = jobs.Worker(quiet, settings)
        for _ in range(8):  # psycopg prepares the claim after five
            assert worker.claim(50) == []
        with db.transaction() as session:
            jobs.enqueue_many(
                session=session,
                kind=jobkinds.RECORD_ONE,
                payloads=[{"n": n} for n in range(6000)],
            )
        started = time.monotonic()
        claimed = worker.claim(50)
        took = time.monotonic() - started
    finally:
        quiet.dispose()
    assert len(claimed) == 50 and len({job.id for job in claimed}) == 50
    assert took < 1.0, f"one claim took {took:.1f} s"
    with db.sessionmaker() as session:
        running = session.scalar(
            sa.select(sa.func.count()).select_from(Job).where(Job.status == "running")
        )
    assert running == 50
