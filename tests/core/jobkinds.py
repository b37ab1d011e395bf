"""Test-only job kinds, loadable in worker subprocesses with LAMPLIGHTER_PLUGINS=tests.core.jobkinds.

Environment knobs (read at import, so they work in ``lamplighter worker`` subprocesses):

* ``LAMPLIGHTER_TEST_KINDS=1``: register the kinds' handlers. Only the worker subprocesses set
  it; the test process imports this module for its names and never runs these kinds itself, so
  they stay out of its registry.

* ``LAMPLIGHTER_TEST_READY_DIR``: touch ``<dir>/<pid>`` once the kinds are registered, so a
  test knows the worker process is up before it enqueues work.
* ``LAMPLIGHTER_TEST_RECURRING=1``: declare the recurring ``test.tick`` job (off by default, so
  plain workers started by other tests do not create a schedule that fires every second).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from lamplighter.core import jobs
from lamplighter.core.db import Database

HANG = "test.hang"
RECORD_ONE = "test.record_one"
RECORD_BATCH = "test.record_batch"
TICK = "test.tick"
RUNS_TABLE = "test_job_runs"


def append_line(path: str, line: str) -> None:
    """Append one line with a single O_APPEND write, safe across processes."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def hang(ctx: jobs.JobContext) -> None:
    """Record the start (job id, attempt, pid) in payload["log"]; hang on the first attempts."""
    append_line(ctx.payload["log"], f"{ctx.job_id} {ctx.attempt} {os.getpid()}")
    if ctx.attempt <= int(ctx.payload.get("hang_attempts", 0)):
        time.sleep(float(ctx.payload.get("sleep_s", 120)))


def _record(ctx: jobs.JobContext) -> None:
    # In the job's own transaction: the row exists exactly when the job committed as done.
    ctx.session.execute(
        sa.text(f"INSERT INTO {RUNS_TABLE} (job_id, pid, kind) VALUES (:job_id, :pid, :kind)"),
        {"job_id": ctx.job_id, "pid": os.getpid(), "kind": ctx.kind},
    )


def record_batch(ctx: jobs.JobContext) -> None:
    _record(ctx)


def record_one(ctx: jobs.JobContext) -> None:
    _record(ctx)
    time.sleep(float(ctx.payload.get("sleep_s", 0)))


def tick(ctx: jobs.JobContext) -> None:
    """The recurring job; the test counts its rows by ``period``."""


def declare_recurring() -> None:
    jobs.recurring(TICK, every_s=1, kind=TICK)


def undeclare_recurring() -> None:
    jobs.RECURRING.pop(TICK, None)


def scheduler_main() -> None:
    """``python -c 'from tests.core.jobkinds import scheduler_main; scheduler_main()' URL START END``:
    call ``schedule_due`` in a tight loop between two epoch times; print how many periods it won."""
    url, start_at, end_at = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    declare_recurring()
    db = Database(url, pool_size=2)
    wins = 0
    try:
        while time.time() < start_at:
            time.sleep(0.005)
        while time.time() < end_at:
            wins += jobs.schedule_due(db=db)
            time.sleep(0.002)
    finally:
        db.dispose()
    print(wins)


HANDLERS: dict[str, jobs.Handler] = {
    HANG: hang,
    RECORD_BATCH: record_batch,
    RECORD_ONE: record_one,
    TICK: tick,
}
BATCH_SAFE = {RECORD_BATCH, TICK}


def register() -> None:
    for kind, func in HANDLERS.items():
        jobs.handler(kind, batch_safe=kind in BATCH_SAFE)(func)


if os.environ.get("LAMPLIGHTER_TEST_KINDS") == "1":
    register()

if os.environ.get("LAMPLIGHTER_TEST_RECURRING") == "1":
    declare_recurring()

if _ready_dir := os.environ.get("LAMPLIGHTER_TEST_READY_DIR"):
    Path(_ready_dir, str(os.getpid())).touch()
