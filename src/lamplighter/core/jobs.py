"""Durable jobs: enqueued in the caller's transaction, claimed by workers under a lease.

A handler is a plain function over a :class:`JobContext`::

    @handler("demo.say_hello")
    def say_hello(ctx: JobContext) -> None:
        user = ctx.session.get(User, ctx.payload["user_id"])
        if user is None:   # stale: nothing to do
            return
        ...

The job is marked done in the handler's own transaction, so what the handler writes and the
"done" mark commit together; a worker whose lease was taken over rolls its work back.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from lamplighter.core import audit
from lamplighter.core.authz import PRIVILEGED, require_role
from lamplighter.core.context import Actor
from lamplighter.core.db import Database, utcnow
from lamplighter.core.errors import Conflict, NotFound
from lamplighter.core.metrics import JOB_FAILURES, JOBS_PROCESSED
from lamplighter.core.models import Job, JobSchedule, JobStatus
from lamplighter.core.pagination import keyset
from lamplighter.core.settings import Settings

log = logging.getLogger("lamplighter.jobs")


class RetryLater(Exception):
    """Raise from a handler to try again after ``delay_s`` without counting it as a failure."""

    def __init__(self, delay_s: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay_s}s")
        self.delay_s = delay_s


class PermanentFailure(Exception):
    """Raise from a handler when retrying cannot help; the job goes straight to dead."""


@dataclass
class JobContext:
    session: Session
    job_id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    settings: Settings
    actor: Actor


Handler = Callable[[JobContext], None]


@dataclass(frozen=True)
class HandlerSpec:
    kind: str
    func: Handler
    batch_safe: bool = False


@dataclass(frozen=True)
class Recurring:
    name: str
    interval_s: int
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


HANDLERS: dict[str, HandlerSpec] = {}
RECURRING: dict[str, Recurring] = {}


def handler(kind: str, *, batch_safe: bool = False) -> Callable[[Handler], Handler]:
    """Register a job handler. ``batch_safe`` handlers only touch the database and are quick,
    so a worker may run many of them in one transaction."""

    def register(func: Handler) -> Handler:
        HANDLERS[kind] = HandlerSpec(kind=kind, func=func, batch_safe=batch_safe)
        return func

    return register


def recurring(name: str, *, every_s: int, kind: str, payload: dict[str, Any] | None = None) -> None:
    """Declare a job that runs once per period across all processes (periods aligned to the epoch)."""
    RECURRING[name] = Recurring(name=name, interval_s=every_s, kind=kind, payload=payload or {})


def _insert(session: Session) -> Any:
    # Core, on the table: the ORM's bulk path cost more than the insert for a batch of jobs.
    table = cast("sa.Table", Job.__table__)
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def enqueue(
    *,
    session: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    due_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
) -> None:
    """Schedule a job inside the caller's transaction; a duplicate idempotency key is a no-op."""
    values = {
        "kind": kind,
        "payload": payload or {},
        "status": JobStatus.QUEUED.value,
        "due_at": due_at or utcnow(),
        "attempts": 0,
        "max_attempts": max_attempts or 8,
        "idempotency_key": idempotency_key,
        "created_at": utcnow(),
    }
    statement = _insert(session).values(**values)
    if idempotency_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["idempotency_key"])
    session.execute(statement)


def enqueue_keyed(*, session: Session, jobs: list[dict[str, Any]]) -> None:
    """Schedule many jobs (``kind``, ``payload``, ``idempotency_key`` each, and ``due_at`` when
    not now) in one statement; a key already queued is skipped, as with :func:`enqueue`."""
    now = utcnow()
    rows = [
        {
            "kind": job["kind"],
            "payload": job["payload"],
            "status": JobStatus.QUEUED.value,
            "due_at": job.get("due_at") or now,
            "attempts": 0,
            "max_attempts": 8,
            "idempotency_key": job["idempotency_key"],
            "created_at": now,
        }
        for job in jobs
    ]
    session.execute(
        _insert(session).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows
    )


def enqueue_many(*, session: Session, kind: str, payloads: list[dict[str, Any]]) -> None:
    now = utcnow()
    session.execute(
        sa.insert(Job),
        [
            {
                "kind": kind,
                "payload": payload,
                "status": JobStatus.QUEUED.value,
                "due_at": now,
                "attempts": 0,
                "max_attempts": 8,
                "created_at": now,
            }
            for payload in payloads
        ],
    )


def backoff_s(attempt: int, *, base_s: float, max_s: float) -> float:
    """Exponential backoff with ±20 % jitter: base, 2 x base, 4 x base ... never above max."""
    exponent = min(max(0, attempt - 1), 64)  # 2**64 x any base is past every sane cap
    raw = min(max_s, base_s * (2.0**exponent))
    return float(min(max_s, raw * random.uniform(0.8, 1.2)))


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


_WAKE = threading.Event()
# Run after the handlers of a batch (``batch_safe`` jobs sharing one transaction), before the
# jobs are marked done: a domain that defers its writes while a batch runs (``in_batch``) writes
# them here, once for the batch.
BATCH_FLUSHES: list[Callable[[Session], None]] = []
_IN_BATCH = "jobs.in_batch"


# Run before the handlers of a batch, with its jobs: a domain reads what they all need at once.
BATCH_PREPARES: list[Callable[[Session, list[Claimed]], None]] = []


def batch_prepare(
    func: Callable[[Session, list[Claimed]], None],
) -> Callable[[Session, list[Claimed]], None]:
    """Register a function reading ahead for a batch's jobs (see BATCH_PREPARES)."""
    BATCH_PREPARES.append(func)
    return func


def batch_flush(func: Callable[[Session], None]) -> Callable[[Session], None]:
    """Register a function writing what a domain deferred during a batch (see BATCH_FLUSHES)."""
    BATCH_FLUSHES.append(func)
    return func


def in_batch(session: Session) -> bool:
    """Whether the session runs a worker's batch of ``batch_safe`` jobs."""
    return bool(session.info.get(_IN_BATCH))


def wake() -> None:
    """Jobs were just committed in this process: its workers claim now rather than at their
    next poll (``job_poll_s``). Workers of other processes still find them by polling."""
    _WAKE.set()


class Worker:
    """Claims due jobs and runs them. One per process on SQLite; any number on PostgreSQL."""

    def __init__(self, db: Database, settings: Settings, *, name: str | None = None) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop_event = threading.Event()
        self._last_requeue = 0.0
        self._last_schedule = 0.0
        self.processed = 0

    # -- claiming ---------------------------------------------------------------------------
    def claim(self, limit: int) -> list[Claimed]:
        now = utcnow()
        lease_until = now + dt.timedelta(seconds=self.settings.job_lease_s)
        candidates = (
            sa.select(Job.id)
            .where(Job.status == JobStatus.QUEUED.value, Job.due_at <= now)
            .order_by(Job.due_at, Job.id)
            .limit(limit)
        )
        chosen: sa.ColumnElement[bool]
        if self.db.is_sqlite:
            chosen = Job.id.in_(candidates.scalar_subquery())
        else:
            # The candidates as an array computed once, then looked up by primary key. As
            # ``id IN (subquery)``, a plan PostgreSQL cached while the table was nearly empty (a
            # prepared statement's generic plan) scanned every job and ran the subquery again for
            # each: 57 s for one claim of a 40,000-job backlog, until autovacuum analysed the table.
            chosen = Job.id == sa.any_(
                sa.func.array(candidates.with_for_update(skip_locked=True).scalar_subquery())
            )
        statement = (
            sa.update(Job)
            .where(chosen)
            .values(
                status=JobStatus.RUNNING.value,
                attempts=Job.attempts + 1,
                lease_expires_at=lease_until,
                locked_by=self.worker_id,
            )
            .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts)
        )
        with self.db.transaction() as session:
            if not self.db.is_sqlite:  # index lookups, whatever the statistics of the moment
                session.execute(sa.text("SET LOCAL enable_seqscan = off"))
            rows = session.execute(statement, execution_options={"synchronize_session": False})
            claimed = [Claimed(*row) for row in rows]
        claimed.sort(key=lambda c: c.id)
        return claimed

    def requeue_expired(self) -> int:
        """Give jobs whose worker died back to the queue (or to the dead list if out of tries)."""
        now = utcnow()
        with self.db.transaction() as session:
            dead = session.execute(
                sa.update(Job)
                .where(
                    Job.status == JobStatus.RUNNING.value,
                    Job.lease_expires_at < now,
                    Job.attempts >= Job.max_attempts,
                )
                .values(
                    status=JobStatus.DEAD.value,
                    lease_expires_at=None,
                    finished_at=now,
                    last_error="lease expired: the worker running it stopped; no tries left",
                ),
                execution_options={"synchronize_session": False},
            )
            again = session.execute(
                sa.update(Job)
                .where(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < now)
                .values(
                    status=JobStatus.QUEUED.value,
                    lease_expires_at=None,
                    locked_by=None,
                    last_error="lease expired: the worker running it stopped",
                ),
                execution_options={"synchronize_session": False},
            )
        return _rowcount(dead) + _rowcount(again)

    # -- running ----------------------------------------------------------------------------
    def _context(self, session: Session, job: Claimed) -> JobContext:
        return JobContext(
            session=session,
            job_id=job.id,
            kind=job.kind,
            payload=job.payload,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            settings=self.settings,
            actor=Actor.system(f"job:{job.kind}"),
        )

    def _mark_done(self, session: Session, ids: list[int]) -> int:
        result = session.execute(
            sa.update(Job)
            .where(
                Job.id.in_(ids),
                Job.status == JobStatus.RUNNING.value,
                Job.locked_by == self.worker_id,
            )
            .values(status=JobStatus.DONE.value, finished_at=utcnow(), lease_expires_at=None),
            execution_options={"synchronize_session": False},
        )
        return _rowcount(result)

    def _run_batch(self, batch: list[Claimed]) -> bool:
        try:
            with self.db.transaction() as session:
                session.info[_IN_BATCH] = True
                for prepare in BATCH_PREPARES:
                    prepare(session, batch)
                for job in batch:
                    HANDLERS[job.kind].func(self._context(session, job))
                for flush in BATCH_FLUSHES:
                    flush(session)
                if self._mark_done(session, [job.id for job in batch]) != len(batch):
                    raise _LeaseLost
        except Exception:
            return False
        for job in batch:
            JOBS_PROCESSED.labels(kind=job.kind, outcome="done").inc()
        self.processed += len(batch)
        return True

    def run_one(self, job: Claimed) -> None:
        spec = HANDLERS.get(job.kind)
        if spec is None:
            self._fail(job, f"no handler registered for job kind {job.kind!r}", permanent=True)
            return
        # Claimed in a batch, the lease may have run out while earlier jobs ran, and another
        # worker may own the job now: renew it first and skip the job if that fails. While the
        # handler runs, a heartbeat renews the lease in short transactions of its own, so a
        # worker that is alive but slower than the lease keeps its job; only a worker that
        # stopped lets the lease run out (and the job go to another).
        if not self._renew_lease(job):
            log.warning("job lease expired before it started; skipped", extra={"job_id": job.id})
            return
        started = time.monotonic()
        heartbeat = _Heartbeat(self, job)
        try:
            with heartbeat, self.db.transaction() as session:
                spec.func(self._context(session, job))
                if heartbeat.lost or self._mark_done(session, [job.id]) != 1:
                    raise _LeaseLost
        except _LeaseLost:
            log.warning("job lease lost; work rolled back", extra={"job_id": job.id})
            return
        except RetryLater as exc:
            self._fail(job, str(exc), delay_s=exc.delay_s, count_attempt=False)
            return
        except PermanentFailure as exc:
            self._fail(job, f"{type(exc).__name__}: {exc}", permanent=True)
            return
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(exc)).strip()
            self._fail(job, detail)
            return
        JOBS_PROCESSED.labels(kind=job.kind, outcome="done").inc()
        self.processed += 1
        log.debug(
            "job done",
            extra={"job_id": job.id, "kind": job.kind, "ms": (time.monotonic() - started) * 1000},
        )

    def _fail(
        self,
        job: Claimed,
        error: str,
        *,
        permanent: bool = False,
        delay_s: float | None = None,
        count_attempt: bool = True,
    ) -> None:
        now = utcnow()
        out_of_tries = count_attempt and job.attempts >= job.max_attempts
        if delay_s is None:
            delay_s = backoff_s(
                job.attempts,
                base_s=self.settings.job_backoff_base_s,
                max_s=self.settings.job_backoff_max_s,
            )
        values: dict[str, Any] = {
            "last_error": error[:4000],
            "lease_expires_at": None,
            "locked_by": None,
        }
        if permanent or out_of_tries:
            values |= {"status": JobStatus.DEAD.value, "finished_at": now}
        else:
            values |= {
                "status": JobStatus.QUEUED.value,
                "due_at": now + dt.timedelta(seconds=delay_s),
            }
            if not count_attempt:
                values["attempts"] = Job.attempts - 1
        with self.db.transaction() as session:
            session.execute(
                sa.update(Job)
                .where(
                    Job.id == job.id,
                    Job.status == JobStatus.RUNNING.value,
                    Job.locked_by == self.worker_id,
                )
                .values(**values),
                execution_options={"synchronize_session": False},
            )
        if count_attempt:
            JOB_FAILURES.labels(kind=job.kind).inc()
        JOBS_PROCESSED.labels(kind=job.kind, outcome=values["status"]).inc()
        log.warning(
            "job failed",
            extra={
                "job_id": job.id,
                "kind": job.kind,
                "attempt": job.attempts,
                "status": values["status"],
                "error": error[:500],
            },
        )

    def run_once(self) -> int:
        """Claim one batch and run it; return how many jobs were claimed."""
        now = time.monotonic()
        if now - self._last_requeue > min(5.0, self.settings.job_lease_s / 4):
            self._last_requeue = now
            self.requeue_expired()
        if now - self._last_schedule > 1.0:
            self._last_schedule = now
            schedule_due(db=self.db)
        claimed = self.claim(self.settings.job_batch_size)
        batchable = [j for j in claimed if j.kind in HANDLERS and HANDLERS[j.kind].batch_safe]
        others = [j for j in claimed if j not in batchable]
        if batchable and not self._run_batch(batchable):
            others = batchable + others
        for index, job in enumerate(others):
            if self.stop_event.is_set():
                self.release(others[index:])
                break
            self.run_one(job)
        return len(claimed)

    def _renew_lease(self, job: Claimed) -> bool:
        """Extend the lease of a job this worker still holds (in a short transaction of its
        own, seen by every other worker at once); False if it no longer holds it."""
        until = utcnow() + dt.timedelta(seconds=self.settings.job_lease_s)
        statement = (
            sa.update(Job)
            .where(
                Job.id == job.id,
                Job.status == JobStatus.RUNNING.value,
                Job.locked_by == self.worker_id,
                Job.attempts == job.attempts,
            )
            .values(lease_expires_at=until)
        )
        with self.db.transaction() as own:
            result = own.execute(statement, execution_options={"synchronize_session": False})
            return _rowcount(result) == 1

    def release(self, unstarted: list[Claimed]) -> None:
        """Give claimed-but-unstarted jobs back to the queue, refunding the attempt."""
        if not unstarted:
            return
        with self.db.transaction() as session:
            session.execute(
                sa.update(Job)
                .where(
                    Job.id.in_([job.id for job in unstarted]),
                    Job.status == JobStatus.RUNNING.value,
                    Job.locked_by == self.worker_id,
                )
                .values(
                    status=JobStatus.QUEUED.value,
                    attempts=Job.attempts - 1,
                    lease_expires_at=None,
                    locked_by=None,
                ),
                execution_options={"synchronize_session": False},
            )

    def run_forever(self) -> None:
        ensure_schedules(db=self.db)
        log.info("worker started", extra={"worker": self.worker_id})
        while not self.stop_event.is_set():
            _WAKE.clear()  # before claiming: a wake during the run brings the next one at once
            try:
                claimed = self.run_once()
            except Exception:
                log.exception("worker loop error")
                claimed = 0
            if claimed == 0:
                _WAKE.wait(self.settings.job_poll_s)
        log.info("worker stopped", extra={"worker": self.worker_id})

    def stop(self) -> None:
        self.stop_event.set()
        _WAKE.set()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="lamplighter-worker", daemon=True)
        thread.start()
        return thread


class _LeaseLost(Exception):
    pass


class _Heartbeat:
    """Renews a running job's lease every third of the lease, on a thread of its own, until
    the handler returns. ``lost`` turns true when a renewal finds the job taken over (the
    worker stalled past its lease); the handler's work is then rolled back, not committed."""

    def __init__(self, worker: Worker, job: Claimed) -> None:
        self.worker = worker
        self.job = job
        self.lost = False
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        self._thread = threading.Thread(
            target=self._beat, name=f"lamplighter-lease-{self.job.id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        interval = max(0.05, self.worker.settings.job_lease_s / 3)
        while not self._stop.wait(interval):
            try:
                held = self.worker._renew_lease(self.job)
            except Exception:  # the database away for a moment: try again next beat
                log.warning(
                    "job lease renewal failed", extra={"job_id": self.job.id}, exc_info=True
                )
                continue
            if not held:
                self.lost = True
                return
            self.renewals += 1


def _rowcount(result: Any) -> int:
    """Rows an UPDATE or DELETE touched (CursorResult.rowcount; typed loosely by SQLAlchemy)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _next_boundary(now: dt.datetime, interval_s: int) -> dt.datetime:
    epoch = int(now.timestamp())
    return dt.datetime.fromtimestamp((epoch // interval_s + 1) * interval_s, tz=dt.UTC)


def ensure_schedules(*, db: Database) -> None:
    """Create a schedule row for every declared recurring job (first run at the next boundary)."""
    now = utcnow()
    with db.transaction() as session:
        existing = {
            name: interval
            for name, interval in session.execute(
                sa.select(JobSchedule.name, JobSchedule.interval_s)
            )
        }
        for spec in RECURRING.values():
            if spec.name not in existing:
                insert = postgresql.insert if not db.is_sqlite else sqlite.insert
                session.execute(
                    insert(JobSchedule)
                    .values(
                        name=spec.name,
                        interval_s=spec.interval_s,
                        next_run_at=_next_boundary(now, spec.interval_s),
                    )
                    .on_conflict_do_nothing(index_elements=["name"])
                )
            elif existing[spec.name] != spec.interval_s:
                session.execute(
                    sa.update(JobSchedule)
                    .where(JobSchedule.name == spec.name)
                    .values(
                        interval_s=spec.interval_s, next_run_at=_next_boundary(now, spec.interval_s)
                    )
                )


def schedule_due(*, db: Database) -> int:
    """Enqueue each recurring job whose period has come; a compare-and-set lets one process win."""
    now = utcnow()
    started = 0
    with db.sessionmaker() as session:
        due = session.execute(
            sa.select(JobSchedule.name, JobSchedule.next_run_at).where(
                JobSchedule.next_run_at <= now
            )
        ).all()
    for name, next_run_at in due:
        spec = RECURRING.get(name)
        if spec is None:
            continue
        with db.transaction() as session:
            won = _rowcount(
                session.execute(
                    sa.update(JobSchedule)
                    .where(JobSchedule.name == name, JobSchedule.next_run_at == next_run_at)
                    .values(next_run_at=_next_boundary(now, spec.interval_s), last_run_at=now),
                    execution_options={"synchronize_session": False},
                )
            )
            if won == 1:
                enqueue(
                    session=session,
                    kind=spec.kind,
                    payload=spec.payload | {"period": next_run_at.isoformat()},
                    idempotency_key=f"recurring:{name}:{next_run_at.isoformat()}",
                )
                started += 1
    return started


def queue_stats(*, session: Session) -> tuple[int, float]:
    """How many jobs are due now, and how long the oldest has waited (seconds)."""
    now = utcnow()
    count, oldest = session.execute(
        sa.select(sa.func.count(), sa.func.min(Job.due_at)).where(
            Job.status == JobStatus.QUEUED.value, Job.due_at <= now
        )
    ).one()
    if oldest is None:
        return int(count), 0.0
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return int(count), max(0.0, (now - oldest).total_seconds())


def list_jobs(
    *,
    session: Session,
    status: str | None = None,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Job]:
    query = sa.select(Job)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    return list(
        session.scalars(keyset(query, Job.id, position=before_id, limit=limit, newest_first=True))
    )


def retry_dead(*, session: Session, actor: Actor, job_id: int) -> Job:
    """Give a dead job a fresh set of tries (SREs and admins)."""
    require_role(actor, *PRIVILEGED, action="retrying jobs")
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    if job.status != JobStatus.DEAD.value:
        raise Conflict(f"job {job_id} is {job.status}; only dead jobs can be retried")
    job.status = JobStatus.QUEUED.value
    job.due_at = utcnow()
    job.attempts = 0
    job.finished_at = None
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="job.retry",
        object_type="job",
        object_id=job.id,
        before={"status": JobStatus.DEAD.value},
        after={"status": job.status},
    )
    return job


# -- built-in kinds -------------------------------------------------------------------------
@handler("core.noop", batch_safe=True)
def _noop(ctx: JobContext) -> None:
    """Does nothing; used by health checks and the job throughput benchmark."""


@handler("core.prune")
def _prune(ctx: JobContext) -> None:
    """Delete finished jobs older than a week so the queue table stays small."""
    cutoff = utcnow() - dt.timedelta(days=7)
    ctx.session.execute(
        sa.delete(Job).where(
            Job.status.in_([JobStatus.DONE.value, JobStatus.CANCELLED.value]),
            Job.finished_at < cutoff,
        )
    )


recurring("core.prune", every_s=3600, kind="core.prune")
