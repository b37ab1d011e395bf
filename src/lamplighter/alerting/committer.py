"""Group commit: the ingest requests of one process share transactions.

A request is parsed, authenticated and limited on the event loop, then its alerts are handed
to the process's committer with a future. The committer's thread takes everything queued (up
to ``MAX_ALERTS_PER_TRANSACTION``), writes it with :func:`store.write` in one transaction and,
after the commit, resolves every future: only then does each request answer 2xx. Under load a
transaction carries many requests, so the fsync, the connection round trips and the journal
lock are paid once for all of them; when idle it carries one, with no added wait (there is no
timer: the next transaction starts when the previous one has committed).

If the transaction fails, every request in it fails with 503 and its sender retries; nothing
of it was committed. One committer per database per process (:func:`for_database`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from lamplighter.alerting.store import Outcome, Submission, write
from lamplighter.core import jobs
from lamplighter.core.db import Database

log = logging.getLogger("lamplighter.alerting.committer")
MAX_ALERTS_PER_TRANSACTION = 5000
IDLE_EXIT_S = 5.0


@dataclass
class _Pending:
    submission: Submission
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outcome]


def _settle(
    future: asyncio.Future[Outcome], outcome: Outcome | None, error: Exception | None
) -> None:
    if future.done():  # the request was cancelled (its client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert outcome is not None
        future.set_result(outcome)


class Committer:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.transactions = 0
        self.requests = 0

    def _ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="alert-committer", daemon=True
                )
                self._thread.start()

    async def submit(self, submission: Submission) -> Outcome:
        """Queue one request's alerts; returns once they are committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put(_Pending(submission, loop, future))
        self._ensure_running()  # under the lock, after the put: see _take
        return await future

    def _take(self) -> list[_Pending] | None:
        """What is queued; None when nothing came for a while (the thread then ends, so an
        idle process holds no thread and no database)."""
        try:
            first = self._queue.get(timeout=IDLE_EXIT_S)
        except queue.Empty:
            with self._lock:
                if self._queue.empty():
                    self._thread = None
                    return None
            first = self._queue.get()
        taken = [first]
        alerts = len(first.submission.alerts)
        while alerts < MAX_ALERTS_PER_TRANSACTION:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            taken.append(more)
            alerts += len(more.submission.alerts)
        return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            outcomes: Sequence[Outcome] | None = None
            error: Exception | None = None
            try:
                outcomes = _write_retrying(self.db, [p.submission for p in taken])
            except Exception as exc:  # every request of the transaction answers 503
                log.exception("alert batch failed", extra={"requests": len(taken)})
                error = exc
            self.transactions += 1
            self.requests += len(taken)
            if outcomes is not None and any(o.opened_groups or o.changed for o in outcomes):
                jobs.wake()  # an in-process worker starts the escalations now, not at its poll
            for index, pending in enumerate(taken):
                outcome = outcomes[index] if outcomes is not None else None
                with contextlib.suppress(RuntimeError):  # that request's event loop has closed
                    pending.loop.call_soon_threadsafe(_settle, pending.future, outcome, error)


RETRIED_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def _write_retrying(db: Database, submissions: Sequence[Submission]) -> list[Outcome]:
    """:func:`store.write`, once more if PostgreSQL chose this transaction as a deadlock's
    victim (another process's writer, or a worker acknowledging the same group, locked rows in
    another order): nothing of it was committed, and the second try usually passes."""
    try:
        return write(db, submissions)
    except sa.exc.DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) not in RETRIED_SQLSTATES:
            raise
        log.warning("alert batch retried after %s", type(exc.orig).__name__)
        return write(db, submissions)


_COMMITTERS: weakref.WeakKeyDictionary[Database, Committer] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def for_database(db: Database) -> Committer:
    with _GUARD:
        committer = _COMMITTERS.get(db)
        if committer is None:
            committer = _COMMITTERS[db] = Committer(db)
        return committer
